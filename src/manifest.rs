//! `manifest.json`: every file of the output tree with its host, role, path,
//! mode, sha256 and the command that makes the host pick it up. It is what
//! dsrgen owns in the output folder: the next build prunes only what it lists.
//!
//! The format carries its own version (`"format": 2`), never dsrgen's, so an
//! upgrade of dsrgen leaves an unchanged tree byte-identical. Format 2 added
//! `rollout`, the order in which a fleet picks a new tree up; a format-1
//! manifest (from an older dsrgen) is still read, so that the next build
//! knows what it owns.

use crate::diagnostic::shown;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Name;
use crate::plan::{PlannedFile, Role};

pub const FILE_NAME: &str = "manifest.json";
pub const FILE_MODE: u32 = 0o644;
/// The manifest's mode while a build is under way: one that is found with it
/// was left by a build killed before it finished.
pub const INTENT_MODE: u32 = 0o600;
pub const FORMAT: u32 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The inventory's file name (never its path).
    pub inventory: String,
    /// Sorted by host, then path.
    pub files: Vec<Entry>,
    /// What each host runs in which phase, in the order to run it. Absent
    /// from format 1.
    #[serde(default)]
    pub rollout: Vec<Step>,
}

/// The phases of a rollout, in order: additions reach backends before the
/// balancers forward to them, and removals reach the balancers before the
/// backends stop holding what they forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Backends put the new tree in place and add what it adds.
    Up,
    /// Balancers reload (and, with their own `dsrgen-vips`, add, then prune).
    Reload,
    /// Backends remove what the new tree no longer holds.
    Prune,
}

/// One command a host runs in one phase, when one of `when` (paths of the
/// host's files) changed or went away since the host last picked a tree up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub phase: Phase,
    pub host: String,
    pub run: String,
    pub when: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub host: String,
    pub role: String,
    /// The path on the host, relative to its root: `etc/sysctl.d/90-dsrgen.conf`.
    pub path: String,
    /// Octal, as `chmod` takes it: `"0644"`.
    pub mode: String,
    pub sha256: String,
    /// The command that makes the host pick the file up.
    pub reload: String,
}

impl Entry {
    /// The file's path in the output folder.
    pub fn tree_path(&self) -> String {
        format!("hosts/{}/{}", self.host, self.path)
    }
}

impl Manifest {
    /// The manifest of a tree: one entry per planned file, in plan order,
    /// with the digest of its rendered content.
    pub fn new<'a>(
        inventory: &str,
        files: impl IntoIterator<Item = (&'a PlannedFile, &'a [u8])>,
    ) -> Self {
        let files: Vec<(&PlannedFile, &[u8])> = files.into_iter().collect();
        Manifest {
            format: FORMAT,
            inventory: inventory.to_owned(),
            rollout: rollout(files.iter().map(|(planned, _)| *planned)),
            files: files
                .into_iter()
                .map(|(planned, content)| Entry {
                    host: planned.host.to_string(),
                    role: planned.role.as_str().to_owned(),
                    path: planned.path.clone(),
                    mode: mode_string(planned.mode()),
                    sha256: sha256_hex(content),
                    reload: planned.reload().to_owned(),
                })
                .collect(),
        }
    }

    /// The manifest as pretty JSON with a final newline. A large tree's
    /// manifest is tens of megabytes: it is measured first and written into
    /// a buffer of its exact size, where growing by doubling would hold up to
    /// twice that for the whole build.
    pub fn to_json(&self) -> String {
        /// Counts what would be written.
        struct Length(usize);
        impl std::io::Write for Length {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0 += bytes.len();
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut length = Length(0);
        serde_json::to_writer_pretty(&mut length, self).expect("a manifest serialises");
        let mut json = Vec::with_capacity(length.0 + 1);
        serde_json::to_writer_pretty(&mut json, self).expect("a manifest serialises");
        json.push(b'\n');
        String::from_utf8(json).expect("JSON is UTF-8")
    }

    /// The manifest of intent, from `older` (the entries of the manifest
    /// in the folder) to this one: every entry of `older`, with the digest of
    /// what its file holds until it is rewritten, and the entries of this one
    /// it does not list, sorted. It owns whatever the folder may hold while
    /// the build goes from one to the other.
    #[must_use]
    pub fn intent(&self, older: &[Entry]) -> Manifest {
        let listed: std::collections::HashSet<String> =
            older.iter().map(Entry::tree_path).collect();
        let mut files = older.to_vec();
        files.extend(
            self.files
                .iter()
                .filter(|e| !listed.contains(&e.tree_path()))
                .cloned(),
        );
        files.sort_by(|a, b| (&a.host, &a.path).cmp(&(&b.host, &b.path)));
        Manifest {
            format: self.format,
            inventory: self.inventory.clone(),
            files,
            rollout: self.rollout.clone(),
        }
    }

    /// Read a previous build's manifest. Entries whose path could lead outside
    /// `hosts/<host>/` are dropped with a warning: dsrgen never prunes there;
    /// so is a second entry for one path.
    pub fn parse(text: &str) -> Result<(Self, Vec<String>), String> {
        let mut manifest: Manifest = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if !(1..=FORMAT).contains(&manifest.format) {
            return Err(format!(
                "it has format {}; this dsrgen reads formats 1 to {FORMAT}",
                manifest.format
            ));
        }
        let mut warnings = Vec::new();
        let mut seen = std::collections::HashSet::new();
        manifest.files.retain(|entry| {
            let safe = Name::parse(&entry.host).is_ok() && is_plain_relative(&entry.path);
            if !safe {
                warnings.push(format!(
                    "{FILE_NAME} lists `{}` for host `{}`, which is not a path inside `hosts/<host>/`; ignoring it",
                    shown(&entry.path),
                    shown(&entry.host)
                ));
                return false;
            }
            let first = seen.insert(entry.tree_path());
            if !first {
                warnings.push(format!(
                    "{FILE_NAME} lists `{}` for host `{}` twice; using the first",
                    shown(&entry.path),
                    shown(&entry.host)
                ));
            }
            first
        });
        Ok((manifest, warnings))
    }
}

/// What a script that went away runs where its `prune` would have run: it
/// removes every address it added.
pub const SCRIPT_DOWN: &str = "/usr/local/sbin/dsrgen-vips down";

impl Manifest {
    /// The steps a fleet running the tree of `previous` owes when this tree
    /// reaches it, in rollout order, as the Ansible role and the Puppet
    /// module work them out: this manifest's steps that name a file that is
    /// new or changed (digest or mode), the reloads of files that went away in
    /// their host's phase (`up` for a backend, `reload` for a balancer), and
    /// for a script that went away its `down` where its `prune` would have
    /// run. Each step's `when` lists only the files of this change.
    pub fn owed(&self, previous: &Manifest) -> Vec<Step> {
        use std::collections::{BTreeMap, HashMap, HashSet};

        let before: HashMap<(&str, &str), &Entry> = previous
            .files
            .iter()
            .map(|e| ((e.host.as_str(), e.path.as_str()), e))
            .collect();
        let changed: HashSet<(&str, &str)> = self
            .files
            .iter()
            .filter(|e| {
                before
                    .get(&(e.host.as_str(), e.path.as_str()))
                    .is_none_or(|old| old.sha256 != e.sha256 || old.mode != e.mode)
            })
            .map(|e| (e.host.as_str(), e.path.as_str()))
            .collect();
        let order = crate::kind::reload_order();
        let rank = |run: &str| order.iter().position(|r| *r == run).unwrap_or(order.len());
        let mut steps: BTreeMap<(Phase, String, usize, String), Vec<String>> = BTreeMap::new();
        for step in &self.rollout {
            let when: Vec<String> = step
                .when
                .iter()
                .filter(|p| changed.contains(&(step.host.as_str(), p.as_str())))
                .cloned()
                .collect();
            if !when.is_empty() {
                steps
                    .entry((
                        step.phase,
                        step.host.clone(),
                        rank(&step.run),
                        step.run.clone(),
                    ))
                    .or_default()
                    .extend(when);
            }
        }
        let now: HashSet<(&str, &str)> = self
            .files
            .iter()
            .map(|e| (e.host.as_str(), e.path.as_str()))
            .collect();
        for gone in previous
            .files
            .iter()
            .filter(|e| !now.contains(&(e.host.as_str(), e.path.as_str())))
        {
            let backend = gone.role == Role::Backend.as_str();
            let (phase, run) = if gone.reload == crate::kind::FileKind::Script.reload() {
                let phase = if backend { Phase::Prune } else { Phase::Reload };
                (phase, SCRIPT_DOWN.to_owned())
            } else {
                let phase = if backend { Phase::Up } else { Phase::Reload };
                (phase, gone.reload.clone())
            };
            steps
                .entry((phase, gone.host.clone(), rank(&run), run))
                .or_default()
                .push(gone.path.clone());
        }
        steps
            .into_iter()
            .map(|((phase, host, _, run), mut when)| {
                when.sort();
                when.dedup();
                Step {
                    phase,
                    host,
                    run,
                    when,
                }
            })
            .collect()
    }
}

/// The steps of a rollout: a backend's reloads in phase `up` and its prune in
/// phase `prune`; a balancer's reloads, then its prune, in phase `reload`.
/// Each host's reloads in the order [`crate::kind::reload_order`] gives.
fn rollout<'a>(files: impl IntoIterator<Item = &'a PlannedFile>) -> Vec<Step> {
    use std::collections::BTreeMap;

    let order = crate::kind::reload_order();
    // (phase, host, rank) -> (command, paths); prunes rank after every reload.
    let mut steps: BTreeMap<(Phase, String, usize), (&'static str, Vec<String>)> = BTreeMap::new();
    for planned in files {
        let host = planned.host.to_string();
        let phase = match planned.role {
            Role::Backend => Phase::Up,
            Role::Balancer => Phase::Reload,
        };
        let rank = order
            .iter()
            .position(|r| *r == planned.reload())
            .expect("every reload is in the declared order");
        let mut add = |phase: Phase, rank: usize, run: &'static str| {
            steps
                .entry((phase, host.clone(), rank))
                .or_insert_with(|| (run, Vec::new()))
                .1
                .push(planned.path.clone());
        };
        add(phase, rank, planned.reload());
        if let Some(prune) = planned.kind.prune() {
            let phase = match planned.role {
                Role::Backend => Phase::Prune,
                Role::Balancer => Phase::Reload,
            };
            add(phase, order.len(), prune);
        }
    }
    steps
        .into_iter()
        .map(|((phase, host, _), (run, mut when))| {
            when.sort();
            Step {
                phase,
                host,
                run: run.to_owned(),
                when,
            }
        })
        .collect()
}

/// A relative path of plain components only: no root, no empty, `.` or `..`
/// component, no NUL.
fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
}

pub fn sha256_hex(content: &[u8]) -> String {
    use std::fmt::Write as _;

    Sha256::digest(content)
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// A file mode as four octal digits.
pub fn mode_string(mode: u32) -> String {
    format!("{mode:04o}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_trusted() {
        for good in ["etc/sysctl.d/90-dsrgen.conf", "usr/local/sbin/dsrgen-vips"] {
            assert!(is_plain_relative(good), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "etc/../../x",
            "etc/./x",
            "etc//x",
            "etc/",
            "a\0b",
        ] {
            assert!(!is_plain_relative(bad), "{bad:?}");
        }
    }

    #[test]
    fn digests_are_lower_case_hex() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(mode_string(0o755), "0755");
    }

    #[test]
    fn entries_pointing_outside_the_tree_are_dropped() {
        let text = r#"{"format": 1, "inventory": "i.yaml", "files": [
            {"host": "web1", "role": "backend", "path": "etc/a", "mode": "0644", "sha256": "x", "reload": "r"},
            {"host": "..", "role": "backend", "path": "etc/a", "mode": "0644", "sha256": "x", "reload": "r"},
            {"host": "web1", "role": "backend", "path": "../../../etc/passwd", "mode": "0644", "sha256": "x", "reload": "r"}
        ]}"#;
        let (manifest, warnings) = Manifest::parse(text).unwrap();
        assert_eq!(manifest.files.len(), 1);
        assert_eq!(warnings.len(), 2);
        assert!(Manifest::parse("{").is_err());
        assert!(Manifest::parse(&text.replace("\"format\": 1", "\"format\": 2")).is_ok());
        assert!(Manifest::parse(&text.replace("\"format\": 1", "\"format\": 3")).is_err());
    }
}
