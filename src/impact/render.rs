//! The report as text for a terminal and as Markdown for a pull-request
//! comment. The JSON form is [`super::Impact`] serialised as it is.

use std::fmt::Write as _;

use super::{Change, ClusterImpact, Impact, PortImpact, Reload, Values, Weight, percent};

/// One line for a change that changes nothing.
fn no_change(impact: &Impact) -> String {
    format!(
        "no change: {} and {} give the same clusters and the same files\n",
        impact.old, impact.new
    )
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// `2 clusters changed, 1 added; 4 hosts; 1 warning`.
fn summary(impact: &Impact) -> String {
    let count = |change: Change| {
        impact
            .clusters
            .iter()
            .filter(|c| c.change == change)
            .count()
    };
    let mut parts = Vec::new();
    for (change, word) in [
        (Change::Added, "added"),
        (Change::Removed, "removed"),
        (Change::Changed, "changed"),
    ] {
        let n = count(change);
        if n > 0 {
            parts.push(format!("{} {word}", plural(n, "cluster")));
        }
    }
    if parts.is_empty() {
        parts.push("no cluster changed".to_owned());
    }
    let disruptive = impact
        .hosts
        .iter()
        .filter(|h| h.reloads.iter().any(|r| r.disruptive))
        .count();
    let mut hosts = plural(impact.hosts.len(), "host");
    if disruptive > 0 {
        let _ = write!(hosts, " ({disruptive} disruptive)");
    }
    format!(
        "{}; {hosts}; {}",
        parts.join(", "),
        plural(impact.warnings.len(), "warning")
    )
}

fn weights(list: &[Weight]) -> String {
    list.iter()
        .map(|w| match (w.before, w.after) {
            (Some(a), Some(b)) => format!("{} {a} -> {b}", w.name),
            (None, Some(b)) => format!("{} ({b})", w.name),
            (Some(a), None) => format!("{} (was {a})", w.name),
            (None, None) => w.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A port's backend changes, one phrase each.
fn backend_changes(port: &PortImpact) -> Vec<String> {
    [
        ("added", &port.backends_added),
        ("removed", &port.backends_removed),
        ("drained", &port.drained),
        ("undrained", &port.undrained),
        ("reweighted", &port.reweighted),
    ]
    .into_iter()
    .filter(|(_, list)| !list.is_empty())
    .map(|(word, list)| format!("{word} {}", weights(list)))
    .collect()
}

fn setting_changes(port: &PortImpact) -> Vec<String> {
    port.settings
        .iter()
        .map(|s| match (&s.before, &s.after) {
            (Some(a), Some(b)) => format!("{} {a} -> {b}", s.name),
            (None, Some(v)) | (Some(v), None) => format!("{} {v}", s.name),
            (None, None) => s.name.to_owned(),
        })
        .collect()
}

fn change_word(change: Change) -> &'static str {
    match change {
        Change::Added => "added",
        Change::Removed => "removed",
        Change::Changed => "changed",
    }
}

/// `1 -> 2`, or the one value there is.
fn values<T: std::fmt::Display + PartialEq>(v: &Values<T>) -> String {
    match (&v.before, &v.after) {
        (Some(a), Some(b)) if a != b => format!("{a} -> {b}"),
        (_, Some(x)) | (Some(x), None) => x.to_string(),
        (None, None) => String::new(),
    }
}

fn list_values(v: &Values<Vec<String>>) -> String {
    let join = |l: &Option<Vec<String>>| l.as_ref().map(|l| l.join(", "));
    values(&Values {
        before: join(&v.before),
        after: join(&v.after),
    })
}

/// What a cluster's own lines say, before its ports.
fn cluster_facts(c: &ClusterImpact) -> Vec<String> {
    let mut facts = Vec::new();
    if c.change == Change::Changed {
        if c.address.changed() {
            facts.push(format!("address {}", values(&c.address)));
        }
        if c.id.changed() {
            facts.push(format!("id {}", values(&c.id)));
        }
        if c.labels.changed() {
            facts.push(format!("labels {}", list_values(&c.labels)));
        }
        if c.balancers.changed() {
            facts.push(format!("balancers {}", list_values(&c.balancers)));
        }
    } else if c.change == Change::Added {
        facts.push(format!("balancers {}", list_values(&c.balancers)));
    }
    if !c.address_dropped_by.is_empty() {
        facts.push(format!(
            "{} dropped by {}",
            c.address.before.as_deref().unwrap_or_default(),
            c.address_dropped_by.join(", ")
        ));
    }
    if !c.address_added_to.is_empty() {
        facts.push(format!(
            "{} added to {}",
            c.address.after.as_deref().unwrap_or_default(),
            c.address_added_to.join(", ")
        ));
    }
    facts.extend(c.notes.iter().cloned());
    facts
}

/// A cluster's facts, or the ports that change when there is none.
fn what_changes(c: &ClusterImpact) -> String {
    let facts = cluster_facts(c);
    if facts.is_empty() {
        let ports: Vec<&str> = c.ports.iter().map(|p| p.service.as_str()).collect();
        format!("ports {}", ports.join(", "))
    } else {
        facts.join("; ")
    }
}

fn reload_mark(r: &Reload) -> &'static str {
    match (r.restart, r.disruptive) {
        (true, _) => "DISRUPTIVE, needs restart",
        (false, true) => "DISRUPTIVE",
        (false, false) => "not disruptive",
    }
}

/// The report for a terminal.
pub fn text(impact: &Impact) -> String {
    if impact.unchanged {
        return no_change(impact);
    }
    let mut out = format!(
        "impact of {} -> {}: {}\n",
        impact.old,
        impact.new,
        summary(impact)
    );
    if !impact.clusters.is_empty() {
        out.push_str("\nclusters\n");
    }
    for c in &impact.clusters {
        let address = c
            .address
            .after
            .as_ref()
            .or(c.address.before.as_ref())
            .cloned()
            .unwrap_or_default();
        let id = c.id.after.or(c.id.before).unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} {} {address} (id {id})",
            change_word(c.change),
            c.name
        );
        for fact in cluster_facts(c) {
            let _ = writeln!(out, "      {fact}");
        }
        for p in &c.ports {
            let mut line = vec![format!("{} {}", p.service, change_word(p.change))];
            line.extend(setting_changes(p));
            line.extend(backend_changes(p));
            if let Some(share) = p.flows_remapped {
                line.push(format!("flows remapped {}", percent(share)));
            }
            let _ = writeln!(out, "    {}", line.join("; "));
            for note in &p.flows {
                let _ = writeln!(out, "      {note}");
            }
        }
    }
    if !impact.hosts.is_empty() {
        out.push_str("\nhosts\n");
    }
    for h in &impact.hosts {
        let _ = writeln!(out, "  {} ({})", h.name, h.role);
        for f in &h.files {
            let _ = writeln!(out, "    {:8} {}", change_word(f.change), f.path);
        }
        for r in &h.reloads {
            let _ = write!(
                out,
                "    {:8} {}  [{}]",
                phase(r.phase),
                r.run,
                reload_mark(r)
            );
            if r.disruptive {
                let _ = write!(out, ": {}", r.effect);
            }
            out.push('\n');
        }
    }
    if !impact.rollout.is_empty() {
        out.push_str("\nrollout\n");
    }
    for (i, p) in impact.rollout.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {}. {}: {}",
            i + 1,
            phase(p.phase),
            p.hosts.join(", ")
        );
    }
    if !impact.warnings.is_empty() {
        out.push_str("\nwarnings\n");
    }
    for w in &impact.warnings {
        let _ = writeln!(out, "  - {w}");
    }
    out
}

fn phase(p: crate::manifest::Phase) -> &'static str {
    match p {
        crate::manifest::Phase::Up => "up",
        crate::manifest::Phase::Reload => "reload",
        crate::manifest::Phase::Prune => "prune",
    }
}

/// A table cell: no line breaks, `|` escaped.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn code(s: &str) -> String {
    format!("`{s}`")
}

/// The report for a pull-request comment.
pub fn markdown(impact: &Impact) -> String {
    if impact.unchanged {
        return format!("**dsrgen impact**: {}", no_change(impact));
    }
    let mut out = format!(
        "### dsrgen impact\n\n`{}` → `{}`: **{}**\n",
        impact.old,
        impact.new,
        summary(impact)
    );
    if !impact.warnings.is_empty() {
        out.push_str("\n> [!WARNING]\n");
        for w in &impact.warnings {
            let _ = writeln!(out, "> - {w}");
        }
    }
    if !impact.clusters.is_empty() {
        out.push_str(
            "\n#### Clusters\n\n| cluster | change | address | id | what changes |\n|---|---|---|---|---|\n",
        );
    }
    for c in &impact.clusters {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            code(&c.name),
            change_word(c.change),
            values(&c.address),
            values(&c.id),
            cell(&what_changes(c))
        );
    }
    let ports: Vec<(&ClusterImpact, &PortImpact)> = impact
        .clusters
        .iter()
        .flat_map(|c| c.ports.iter().map(move |p| (c, p)))
        .collect();
    if !ports.is_empty() {
        out.push_str(
            "\n#### Ports\n\n| cluster | port | change | settings | backends | flows remapped |\n|---|---|---|---|---|---|\n",
        );
    }
    for (c, p) in &ports {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            code(&c.name),
            p.service,
            change_word(p.change),
            cell(&setting_changes(p).join("; ")),
            cell(&backend_changes(p).join("; ")),
            p.flows_remapped.map_or_else(|| "–".to_owned(), percent)
        );
    }
    let notes: Vec<String> = ports
        .iter()
        .flat_map(|(c, p)| {
            p.flows
                .iter()
                .map(move |n| format!("- {} {}: {n}", code(&c.name), p.service))
        })
        .collect();
    if !notes.is_empty() {
        let _ = write!(out, "\n**Flows**\n\n{}\n", notes.join("\n"));
    }
    if !impact.hosts.is_empty() {
        out.push_str("\n#### Hosts\n\n| host | role | files | reloads |\n|---|---|---|---|\n");
    }
    for h in &impact.hosts {
        let files: Vec<String> = h
            .files
            .iter()
            .map(|f| format!("{} ({})", code(&f.path), change_word(f.change)))
            .collect();
        let reloads: Vec<String> = h
            .reloads
            .iter()
            .map(|r| {
                let mark = if r.disruptive {
                    format!(" **{}**", reload_mark(r))
                } else {
                    String::new()
                };
                format!("{}: {}{mark}", phase(r.phase), code(&r.run))
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            code(&h.name),
            h.role,
            cell(&files.join("<br>")),
            cell(&reloads.join("<br>"))
        );
    }
    if !impact.rollout.is_empty() {
        out.push_str("\n#### Rollout\n\n");
    }
    for (i, p) in impact.rollout.iter().enumerate() {
        let hosts: Vec<String> = p.hosts.iter().map(|h| code(h)).collect();
        let _ = writeln!(
            out,
            "{}. **{}**: {}",
            i + 1,
            phase(p.phase),
            hosts.join(", ")
        );
    }
    out
}

/// The report as JSON, pretty, with a final newline.
pub fn json(impact: &Impact) -> String {
    let mut s = serde_json::to_string_pretty(impact).expect("the report serialises");
    s.push('\n');
    s
}
