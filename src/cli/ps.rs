//! `amphi ps` (runc-ps(8)): the processes of a container.

use clap::Args;

use super::{ExitCode, Global};
use crate::cgroups::ContainerCgroup;
use crate::container;

/// Output format of `ps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PsFormat {
    /// The host's `ps` output (default `-ef`), restricted to the container's processes.
    Table,
    /// A JSON array of host pids, e.g. `[6012,6051]` (what containerd parses).
    Json,
}

/// `amphi ps [--format table|json] ID [PS OPTIONS...]`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Select one of: table or json.
    #[arg(short = 'f', long, value_enum, default_value = "table")]
    format: PsFormat,
    /// The container id.
    id: String,
    /// Options for ps(1) in table format (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

/// Lists the container's processes.
pub fn run(g: &Global, a: PsArgs) -> anyhow::Result<ExitCode> {
    let state = container::load(&g.root, &a.id)?;
    let mut pids = match &state.cgroup_path {
        Some(p) => ContainerCgroup::open(p)?.pids(),
        None => Vec::new(),
    };
    pids.sort_unstable();
    match a.format {
        PsFormat::Json => {
            println!("{}", serde_json::to_string(&pids)?);
        }
        PsFormat::Table => {
            if a.ps_args.is_empty() {
                print_table(&["-ef".to_string()], &pids)?;
            } else {
                print_table(&a.ps_args, &pids)?;
            }
        }
    }
    Ok(0)
}

fn print_table(args: &[String], pids: &[i32]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ps")
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("run ps: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow::anyhow!("ps {}: no PID column", args.join(" ")))?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(())
}
