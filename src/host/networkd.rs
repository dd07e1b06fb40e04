//! systemd-networkd: `90-dsrgen-<device>.network` with one `[Address]` per
//! cluster address, and `.netdev` when the device is a dummy dsrgen creates.

use serde::Serialize;

use super::{HeldAddress, Holding};
use crate::kind::FileKind;
use crate::model::{IfName, Name};
use crate::plan::{Context, PlannedFile};

#[derive(Clone, Debug, Serialize)]
pub struct NetworkContext {
    pub inventory: String,
    pub host: Name,
    pub device: IfName,
    pub addresses: Vec<HeldAddress>,
}

pub fn files(h: &Holding) -> Vec<(PlannedFile, Context)> {
    let device = h.device;
    let network = NetworkContext {
        inventory: h.inventory.to_owned(),
        host: h.host.clone(),
        device: device.clone(),
        addresses: h.addresses.clone(),
    };
    let mut files = Vec::new();
    if h.dummy {
        files.push((
            h.file(
                FileKind::Netdev,
                format!("etc/systemd/network/90-dsrgen-{device}.netdev"),
            ),
            Context::Network(network.clone()),
        ));
    }
    files.push((
        h.file(
            FileKind::Network,
            format!("etc/systemd/network/90-dsrgen-{device}.network"),
        ),
        Context::Network(network),
    ));
    files
}
