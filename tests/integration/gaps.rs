//! Inventories that pass `check` yet cannot work: the rules that are not an
//! error of one fixture (those live in `fixtures/invalid`), such as warnings
//! that depend on a combination of settings.

use crate::support::{TempDir, Test, root};

/// `outputs` that put cluster addresses on backends (networkd) with neither
/// `sysctl` nor `script` leave the ARP settings unset: a warning at `outputs`.
#[test]
fn outputs_without_arp_settings_are_warned_about() {
    let tmp = TempDir::new("outputs");
    let minimal =
        std::fs::read_to_string(root().join("fixtures/valid/minimal.yaml")).expect("read");
    for (outputs, warned) in [
        ("[networkd]", true),
        ("[networkd, sysctl]", false),
        ("[networkd, script]", false),
        ("[sysctl]", false),
    ] {
        let inventory = tmp.join("inventory.yaml");
        std::fs::write(
            &inventory,
            format!("{minimal}\ndefaults:\n  outputs: {outputs}\n"),
        )
        .expect("write");
        let run = Test::new().arg("check").arg(&inventory).run();
        run.code(0);
        assert_eq!(
            run.stderr
                .contains("nothing sets arp_ignore and arp_announce"),
            warned,
            "{outputs}: {run}"
        );
    }
}
