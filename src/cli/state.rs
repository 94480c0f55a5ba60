//! `amphi state` (runc-state(8)) and `amphi list` (runc-list(8)).

use std::os::unix::fs::MetadataExt;

use clap::Args;

use super::{ExitCode, Global};
use crate::container;

/// `amphi state ID`.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// The container id.
    id: String,
}

/// Prints the state as runc does: indented JSON of runc's `containerState`.
pub fn run_state(g: &Global, a: StateArgs) -> anyhow::Result<ExitCode> {
    let state = container::load(&g.root, &a.id)?;
    println!("{}", serde_json::to_string_pretty(&state.output())?);
    Ok(0)
}

/// Output format of `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    /// Aligned columns: ID PID STATUS BUNDLE CREATED OWNER.
    Table,
    /// A JSON array of states.
    Json,
}

/// `amphi list [-q] [--format table|json]`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Select one of: table or json.
    #[arg(short = 'f', long, value_enum, default_value = "table")]
    format: ListFormat,
    /// Display only container IDs.
    #[arg(short = 'q', long)]
    quiet: bool,
}

fn owner_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("#{uid}"))
}

/// Lists the containers under `--root`.
pub fn run_list(g: &Global, a: ListArgs) -> anyhow::Result<ExitCode> {
    let mut states = Vec::new();
    for id in container::list_ids(&g.root) {
        let state = match container::load(&g.root, &id) {
            Ok(s) => s,
            Err(e) => {
                // As runc: a container whose state cannot be read is reported, not hidden.
                log::warn!("load container {id}: {e:#}");
                continue;
            }
        };
        let mut out = state.output();
        let uid = std::fs::metadata(g.root.join(&id))
            .map(|m| m.uid())
            .unwrap_or(0);
        out.owner = owner_name(uid);
        states.push(out);
    }
    if a.quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(0);
    }
    match a.format {
        ListFormat::Json => println!("{}", serde_json::to_string(&states)?),
        ListFormat::Table => {
            let rows: Vec<[String; 6]> = states
                .iter()
                .map(|s| {
                    [
                        s.id.clone(),
                        s.pid.to_string(),
                        s.status.clone(),
                        s.bundle.clone(),
                        s.created.clone(),
                        s.owner.clone(),
                    ]
                })
                .collect();
            let head = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            let mut widths = head.clone().map(|h| h.len());
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r.iter()) {
                    *w = (*w).max(c.len());
                }
            }
            for r in std::iter::once(&head).chain(rows.iter()) {
                let line: Vec<String> = r
                    .iter()
                    .zip(widths.iter())
                    .enumerate()
                    .map(|(i, (c, w))| {
                        if i == 5 {
                            c.clone()
                        } else {
                            format!("{c:<w$}")
                        }
                    })
                    .collect();
                println!("{}", line.join("   "));
            }
        }
    }
    Ok(0)
}
