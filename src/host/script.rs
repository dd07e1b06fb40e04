//! `usr/local/sbin/dsrgen-vips`, the POSIX sh script that puts a host's
//! cluster addresses (and ARP settings) in place, and the systemd unit that
//! runs it at boot.

use serde::Serialize;

use super::{HeldAddress, Holding};
use crate::kind::FileKind;
use crate::model::{IfName, Name};
use crate::plan::{Context, PlannedFile};

/// Where the script lands on a host, relative to its root.
pub const SCRIPT_PATH: &str = "usr/local/sbin/dsrgen-vips";

#[derive(Clone, Debug, Serialize)]
pub struct ScriptContext {
    pub inventory: String,
    pub host: Name,
    /// The comment that says what the script holds, line by line.
    pub purpose: Vec<String>,
    pub device: IfName,
    /// The addresses are on several devices, or another than `device`:
    /// each address line then names its own.
    pub several: bool,
    /// The devices, as the status line names them.
    pub devices: String,
    pub create_dummy: bool,
    pub bring_up: bool,
    pub sysctls: Vec<ProcSetting>,
    pub addresses: Vec<HeldAddress>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProcSetting {
    pub path: String,
    pub value: &'static str,
    /// `required` for `all`, `optional` for the interface's own setting.
    pub required: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServiceContext {
    pub inventory: String,
    pub host: Name,
    pub script: String,
}

/// The script and its unit.
pub fn files(h: &Holding) -> [(PlannedFile, Context); 2] {
    let sysctls = h.arp.as_ref().map_or_else(Vec::new, |arp| {
        std::iter::once(("all", "required"))
            .chain(arp.interfaces.iter().map(|i| (i.as_str(), "optional")))
            .flat_map(|(conf, required)| {
                arp.settings()
                    .into_iter()
                    .map(move |(setting, value)| ProcSetting {
                        path: format!("/proc/sys/net/ipv4/conf/{conf}/{setting}"),
                        value,
                        required,
                    })
            })
            .collect()
    });
    let script = Context::Script(ScriptContext {
        inventory: h.inventory.to_owned(),
        host: h.host.clone(),
        purpose: h.purpose.clone(),
        device: h.device.clone(),
        several: h.addresses.iter().any(|a| &a.device != h.device),
        devices: {
            let mut devices: Vec<&str> = h.addresses.iter().map(|a| a.device.as_str()).collect();
            devices.sort_unstable();
            devices.dedup();
            devices.join(", ")
        },
        create_dummy: h.dummy,
        bring_up: h.owns_device,
        sysctls,
        addresses: h.addresses.clone(),
    });
    let service = Context::Service(ServiceContext {
        inventory: h.inventory.to_owned(),
        host: h.host.clone(),
        script: format!("/{SCRIPT_PATH}"),
    });
    [
        (h.file(FileKind::Script, SCRIPT_PATH), script),
        (
            h.file(FileKind::Service, "etc/systemd/system/dsrgen-vips.service"),
            service,
        ),
    ]
}
