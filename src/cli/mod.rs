//! The command line, runc-compatible: same subcommands, flags, output shapes and exit codes
//! (runc(8) and its subcommand pages). One file per subcommand turns flags into library calls.

mod create;
mod delete;
mod events;
mod exec;
mod features;
mod foreground;
mod kill;
mod pause;
mod ps;
mod run;
mod spec;
mod start;
mod state;
mod update;

use std::path::PathBuf;

use clap::Parser;

use crate::logging::LogFormat;

/// Default state root for root (runc uses `/run/runc`).
pub const DEFAULT_ROOT: &str = "/run/amphi";

/// amphi: an OCI runtime for Linux containers and WebAssembly (WASI) workloads.
#[derive(Debug, Parser)]
#[command(name = "amphi", disable_version_flag = true, args_override_self = true)]
pub struct Cli {
    /// Root directory for storage of container state (this should be located in tmpfs) [default:
    /// /run/amphi for root, $XDG_RUNTIME_DIR/amphi for other users].
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    /// Set the log file to write amphi logs to (default is stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Set the log format ('text' (default), or 'json').
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Enable debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Enable systemd cgroup support (cgroupsPath as slice:prefix:name).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Ignore cgroup permission errors ('true', 'false', or 'auto': rootless when not root or inside a
    /// user namespace).
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = ["true", "false", "auto"])]
    pub rootless: Option<String>,
    /// Accepted for runc compatibility: criu path.
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    /// Directory of the compiled-Wasm (AOT) cache [default: /var/lib/amphi/wasm-cache for root,
    /// $XDG_CACHE_HOME/amphi/wasm-cache (~/.cache/amphi/wasm-cache) for other users].
    #[arg(long = "wasm-cache-dir", global = true, env = "AMPHI_WASM_CACHE_DIR")]
    pub wasm_cache_dir: Option<PathBuf>,
    /// Print the version.
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Declares the subcommands once: the [`Command`] enum, and its clap glue.
///
/// Each subcommand's flags are added only when that subcommand is the one parsed (clap's
/// `Command::defer`), not at every start of amphi: `#[derive(Subcommand)]` built the flags of all
/// fifteen subcommands on every invocation, which cost each start 0.19 ms of CPU and 90 page faults
/// (perf stat, release build), and a create+start+delete cycle starts amphi four times. Help texts,
/// errors and suggestions stay clap's.
macro_rules! subcommands {
    ($($(#[alias = $alias:literal])? $variant:ident($ty:ty) = $name:literal, $about:literal;)+) => {
        /// The subcommands.
        #[derive(Debug)]
        pub enum Command {
            $(
                #[doc = $about]
                $variant($ty),
            )+
        }

        impl clap::FromArgMatches for Command {
            fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
                Self::from_arg_matches_mut(&mut m.clone())
            }

            fn from_arg_matches_mut(m: &mut clap::ArgMatches) -> Result<Self, clap::Error> {
                match m.remove_subcommand() {
                    $(
                        Some((name, mut sub)) if name == $name => Ok(Command::$variant(
                            <$ty as clap::FromArgMatches>::from_arg_matches_mut(&mut sub)?,
                        )),
                    )+
                    Some((name, _)) => Err(clap::Error::raw(
                        clap::error::ErrorKind::InvalidSubcommand,
                        format!("the subcommand '{name}' wasn't recognized"),
                    )),
                    None => Err(clap::Error::raw(
                        clap::error::ErrorKind::MissingSubcommand,
                        "a subcommand is required",
                    )),
                }
            }

            fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
                self.update_from_arg_matches_mut(&mut m.clone())
            }

            fn update_from_arg_matches_mut(
                &mut self,
                m: &mut clap::ArgMatches,
            ) -> Result<(), clap::Error> {
                *self = Self::from_arg_matches_mut(m)?;
                Ok(())
            }
        }

        impl clap::Subcommand for Command {
            fn augment_subcommands(cmd: clap::Command) -> clap::Command {
                cmd$(.subcommand(
                    clap::Command::new($name)
                        .about($about)
                        $(.alias($alias))?
                        .defer(|c| own_flags_first(<$ty as clap::Args>::augment_args(c).about($about))),
                ))+
            }

            fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
                Self::augment_subcommands(cmd)
            }

            fn has_subcommand(name: &str) -> bool {
                matches!(name, $($name)|+)
            }
        }
    };
}

subcommands! {
    Create(create::CreateArgs) = "create", "Create a container";
    Start(start::StartArgs) = "start", "Execute the user-defined process in a created container";
    Exec(Box<exec::ExecArgs>) = "exec", "Execute a new process inside the container";
    Run(run::RunArgs) = "run", "Create and run a container";
    State(state::StateArgs) = "state", "Output the state of a container";
    Kill(kill::KillArgs) = "kill", "Send a signal to the container's init process";
    Pause(pause::PauseArgs) = "pause", "Suspend all processes inside the container";
    Resume(pause::PauseArgs) = "resume", "Resume all processes that have been previously paused";
    Events(events::EventsArgs) = "events",
        "Display container events such as OOM notifications and statistics";
    Ps(ps::PsArgs) = "ps", "Display the processes running inside a container";
    Update(Box<update::UpdateArgs>) = "update", "Update container resource constraints";
    Delete(delete::DeleteArgs) = "delete", "Delete any resources held by the container";
    #[alias = "ls"]
    List(state::ListArgs) = "list", "List containers started by amphi with the given root";
    Spec(spec::SpecArgs) = "spec", "Create a new specification file (config.json)";
    Features(features::FeaturesArgs) = "features",
        "Show the enabled features (runtime-spec features.md)";
}

/// The help of a subcommand lists its own flags (in their order), then the global ones (`--root`,
/// ...), then `-h`. A deferred subcommand receives the global flags before its own, so its help
/// would otherwise start with them.
fn own_flags_first(cmd: clap::Command) -> clap::Command {
    let mut own = 0;
    let mut global = 0;
    cmd.mut_args(|a| {
        if a.is_global_set() {
            global += 1;
            a.display_order(100 + global)
        } else {
            own += 1;
            a.display_order(own)
        }
    })
}

/// What a subcommand hands back: the process exit code.
pub type ExitCode = i32;

/// An error that ends amphi with a specific exit status instead of 1 (e.g. 255 when `exec` could not
/// start its command, as runc).
#[derive(Debug)]
pub struct WithCode(pub i32, pub anyhow::Error);

impl std::fmt::Display for WithCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.1)
    }
}

impl std::error::Error for WithCode {}

/// Shared context of a subcommand.
#[derive(Debug, Clone)]
pub struct Global {
    /// `--root`.
    pub root: PathBuf,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// The base name amphi was invoked under.
    pub invoked_as: String,
    /// `--rootless` given as `true` (for `spec`).
    pub rootless: bool,
    /// The effective rootless mode (`--rootless`, `auto` by default: not root, or in a user
    /// namespace): cgroups are used only when delegated.
    pub rootless_mode: bool,
    /// `--wasm-cache-dir`, or the caller's default (see [`crate::rootless::default_wasm_cache_dir`]);
    /// empty when there is none (no cache is used).
    pub wasm_cache_dir: PathBuf,
}

fn version_text() -> String {
    format!(
        "amphi version {}\nspec: {}\nexecutors: linux, wasm (wasmtime {}: WASI preview 1 modules, preview 2 components)\ncgroups: v1, v2, hybrid (cgroupfs)\n",
        env!("CARGO_PKG_VERSION"),
        crate::OCI_SPEC_VERSION,
        amphi_executors::wasm::cache::WASMTIME_VERSION
    )
}

/// Entry point of `amphi-full`: parses `std::env::args_os`, runs the subcommand (any of them), reports
/// errors (to `--log` in its format, and to stderr), and returns the exit code. `create`, `run` and
/// `exec` first make sure that the running image is one no container can write
/// ([`crate::security::exe::ensure_protected`]).
pub fn main() -> i32 {
    main_with(crate::security::exe::ensure_protected, container_command)
}

/// Entry point of `amphi`, the front: as [`main`], but `create`, `run` and `exec` are handed, with
/// the same arguments and environment, to `amphi-full` next to it
/// ([`crate::security::exe::exec_full`]), so that this binary links neither the create pipeline nor
/// the executors. Returns the exit code; for those three subcommands, only when `amphi-full` could
/// not be executed (exit code 1, the error names the file).
pub fn front_main() -> i32 {
    main_with(
        || Err(crate::security::exe::exec_full()),
        |_, _| anyhow::bail!("create, run and exec are served by amphi-full"),
    )
}

/// `create`, `run` and `exec` in this process (the others never reach it).
fn container_command(g: &Global, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Create(a) => create::run(g, a),
        Command::Exec(a) => exec::run(g, *a),
        Command::Run(a) => run::run(g, a),
        _ => anyhow::bail!("not a subcommand that enters a container"),
    }
}

/// The command line of both binaries. `enter` runs first for the subcommands whose processes enter
/// containers (`create`, `run`, `exec`), and `container` runs them; each binary passes its own pair,
/// so that the front's image contains none of the code that only `amphi-full` runs.
fn main_with(
    enter: fn() -> anyhow::Result<()>,
    container: fn(&Global, Command) -> anyhow::Result<ExitCode>,
) -> i32 {
    // Rust starts every program with SIGPIPE ignored, and an ignored signal stays ignored across
    // execve: restore the default so neither amphi (`amphi list | head`) nor the container's workload
    // inherits it.
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler and touches no memory.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "amphi".into());
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    if cli.version {
        print!("{}", version_text());
        return 0;
    }
    if let Err(e) = crate::logging::init(cli.log.as_deref(), cli.log_format, cli.debug) {
        eprintln!(
            "amphi: --log {}: {e}",
            cli.log
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display()
        );
        return 1;
    }
    let Some(command) = cli.command else {
        eprintln!("amphi: a subcommand is required (see amphi --help)");
        return 1;
    };
    // Escape class 1 (CVE-2019-5736): the processes of these subcommands enter containers, and must
    // run from an image that no container can write (the front hands them to amphi-full here).
    if matches!(
        command,
        Command::Create(_) | Command::Run(_) | Command::Exec(_)
    ) {
        if let Err(e) = enter() {
            let msg = format!("{e:#}");
            log::error!("{msg}");
            if cli.log.is_some() {
                eprintln!("amphi: {msg}");
            }
            return 1;
        }
    }
    let root = match cli.root.clone() {
        Some(r) => r,
        None => match crate::rootless::default_state_root().and_then(|r| {
            if !matches!(command, Command::Spec(_) | Command::Features(_)) {
                crate::rootless::prepare_default_root(&r)?;
            }
            Ok(r)
        }) {
            Ok(r) => r,
            Err(e) if !matches!(command, Command::Spec(_) | Command::Features(_)) => {
                let msg = format!("{e:#}");
                log::error!("{msg}");
                if cli.log.is_some() {
                    eprintln!("amphi: {msg}");
                }
                return 1;
            }
            Err(_) => PathBuf::from(DEFAULT_ROOT),
        },
    };
    let g = Global {
        root,
        systemd_cgroup: cli.systemd_cgroup,
        invoked_as,
        rootless: cli.rootless.as_deref() == Some("true"),
        rootless_mode: crate::rootless::is_rootless(cli.rootless.as_deref()),
        wasm_cache_dir: cli
            .wasm_cache_dir
            .clone()
            .or_else(crate::rootless::default_wasm_cache_dir)
            .unwrap_or_default(),
    };
    let result = match command {
        c @ (Command::Create(_) | Command::Exec(_) | Command::Run(_)) => container(&g, c),
        Command::Start(a) => start::run(&g, a),
        Command::State(a) => state::run_state(&g, a),
        Command::Kill(a) => kill::run(&g, a),
        Command::Delete(a) => delete::run(&g, a),
        Command::Pause(a) => pause::run_pause(&g, a),
        Command::Ps(a) => ps::run(&g, a),
        Command::Events(a) => events::run(&g, a),
        Command::Update(a) => update::run(&g, *a),
        Command::Resume(a) => pause::run_resume(&g, a),
        Command::List(a) => state::run_list(&g, a),
        Command::Spec(a) => spec::run(&g, a),
        Command::Features(a) => features::run(&g, a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            log::error!("{msg}");
            if cli.log.is_some() {
                eprintln!("amphi: {msg}");
            }
            e.downcast_ref::<WithCode>().map(|w| w.0).unwrap_or(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        match Cli::try_parse_from(args) {
            Ok(c) => c,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    #[test]
    fn definition_is_consistent_with_every_subcommand_built() {
        // debug_assert builds the deferred subcommands too, and checks them.
        Cli::command().debug_assert();
    }

    #[test]
    fn deferred_subcommands_parse_their_own_and_global_flags() {
        let cli = parse(&["amphi", "delete", "--root", "/r", "--force", "c1"]);
        assert_eq!(cli.root.as_deref(), Some(std::path::Path::new("/r")));
        match cli.command {
            Some(Command::Delete(a)) => assert!(format!("{a:?}").contains("force: true"), "{a:?}"),
            other => panic!("parsed as {other:?}"),
        }
        let cli = parse(&["amphi", "--root", "/r2", "ls", "-q"]);
        assert_eq!(cli.root.as_deref(), Some(std::path::Path::new("/r2")));
        match cli.command {
            Some(Command::List(a)) => assert!(format!("{a:?}").contains("quiet: true"), "{a:?}"),
            other => panic!("parsed as {other:?}"),
        }
        assert!(parse(&["amphi", "-v"]).command.is_none());
        let e = Cli::try_parse_from(["amphi", "delet", "c1"]).expect_err("typo accepted");
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidSubcommand);
        assert!(e.to_string().contains("'delete'"), "no suggestion: {e}");
        let e = Cli::try_parse_from(["amphi", "start", "--force", "c1"]).expect_err("accepted");
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn subcommand_help_lists_own_flags_then_global_ones_then_help() {
        let e = Cli::try_parse_from(["amphi", "exec", "--help"]).expect_err("help is an error");
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        let help = e.to_string();
        assert!(help.starts_with("Execute a new process inside the container"));
        let at = |flag: &str| {
            help.find(flag)
                .unwrap_or_else(|| panic!("{flag} missing from:\n{help}"))
        };
        assert!(at("--process <PROCESS>") < at("--ignore-paused"));
        assert!(at("--ignore-paused") < at("--root <ROOT>"));
        assert!(at("--wasm-cache-dir") < at("--help"));
    }
}
