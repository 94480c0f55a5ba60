//! The Wasm executor: runs a WASI preview 1 module (`_start`) or a WASI preview 2 component
//! (`wasi:cli/run`) in wasmtime, inside the container's sandbox, as the container's init process.
//!
//! - `prepare` (host side, in `create`): finds `process.args[0]` in the rootfs, and compiles it, or loads
//!   it from the AOT [`cache`], so that `start` only instantiates.
//! - `load` (in init, with the rootfs final and privileges still held): hides `/proc` behind an empty
//!   read-only tmpfs, so the guest cannot reach the runtime's own process (`/proc/self/mem`,
//!   `/proc/self/exe`, `/proc/1/...`) through its view of `/`.
//! - `exec` (after `start`): instantiates, reports the start, runs the guest, and ends the process with
//!   the guest's status: `proc_exit(n)` -> n; return from `_start` -> 0; a `wasi:cli/run` error -> 1; a
//!   trap -> [`TRAP_STATUS`] (134, as wasmtime's CLI) with the trap on stderr. SIGTERM, SIGINT and SIGHUP
//!   end the guest with 128+signal.

pub mod cache;
pub mod detect;

use std::convert::Infallible;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{PosixRlimitType, Spec};
use wasmtime::component::ResourceTable;
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::{Executor, ExecutorError, Workload};
use detect::WasmKind;

/// Exit status of a guest that trapped (128 + SIGABRT, as wasmtime's CLI on Unix).
pub const TRAP_STATUS: i32 = 134;

/// A compiled workload.
enum Artefact {
    Module(wasmtime::Module),
    Component(wasmtime::component::Component),
}

/// A workload linked against WASI and ready to instantiate (linked once, in `create`).
enum Runnable {
    Module(wasmtime::InstancePre<P1State>),
    Component(wasmtime_wasi::p2::bindings::CommandPre<P2State>),
}

struct Prepared {
    engine: Engine,
    runnable: Runnable,
    memory_limit: Option<usize>,
}

/// Runs WebAssembly workloads with wasmtime.
pub struct WasmExecutor {
    cache: cache::Cache,
    prepared: Option<Prepared>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: String,
}

impl std::fmt::Debug for WasmExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmExecutor")
            .field("cache", &self.cache)
            .field("prepared", &self.prepared.is_some())
            .finish()
    }
}

fn wasm_err(path: &Path, what: &str, e: impl std::fmt::Display) -> ExecutorError {
    // WAT errors point at `<anon>:LINE:COL`: name the file instead.
    let e = e
        .to_string()
        .replace("--> <anon>:", &format!("--> {}:", path.display()));
    ExecutorError::Wasm(format!("process.args[0]: {}: {what}: {e}", path.display()))
}

/// The linear-memory reservation of a container's engine, in bytes: `None` (wasmtime's defaults) unless
/// `RLIMIT_AS` is below 64 GiB, then a quarter of it, or the memory limit (`linux.resources.memory.
/// limit`, `memory_limit`) if smaller, and at least 1 MiB.
fn memory_reservation(spec: &Spec, memory_limit: Option<usize>) -> Option<u64> {
    let address_space = spec
        .process()
        .as_ref()
        .and_then(|p| p.rlimits().as_ref())
        .and_then(|r| r.iter().find(|r| r.typ() == PosixRlimitType::RlimitAs))
        .map(|r| r.soft());
    address_space.filter(|l| *l < (64u64 << 30)).map(|limit| {
        // Leave room for the runtime itself: reserve a quarter of the address space (or the memory
        // limit, if smaller) per linear memory.
        let mut reserve = limit / 4;
        if let Some(m) = memory_limit {
            reserve = reserve.min(m as u64);
        }
        reserve.max(1 << 20)
    })
}

/// The engine configuration of a container with `settings` (see [`cache::EngineSettings`]): sizes the
/// linear-memory reservation to the container's limits, so that a low `RLIMIT_AS` does not make every
/// instantiation fail. It includes the compiler (Cranelift); [`WasmExecutor::compile`] drops it to
/// load a cached artefact. Any change here that is not in the settings must bump
/// [`cache::KEY_FORMAT`].
fn engine_config(settings: &cache::EngineSettings) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Each process instantiates its module once, so a copy-on-write image of the initial memory
    // (a memfd, written once and mapped) only adds system calls in the init process before the
    // guest runs (memfd_create, write, seal, mmap): the data segments are copied instead.
    config.memory_init_cow(false);
    // Set from the settings, not read from the environment by wasmtime, so that the key covers it.
    config.wasm_backtrace_details(if settings.backtrace_details {
        wasmtime::WasmBacktraceDetails::Enable
    } else {
        wasmtime::WasmBacktraceDetails::Disable
    });
    if let Some(reserve) = settings.memory_reservation {
        // Small guards, and growth in place up to 64 MiB.
        config.memory_reservation(reserve);
        config.memory_reservation_for_growth(reserve.min(64 << 20));
        config.memory_guard_size(64 << 10);
    }
    config
}

impl WasmExecutor {
    /// An executor with its AOT cache in `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> WasmExecutor {
        WasmExecutor {
            cache: cache::Cache::new(cache_dir),
            prepared: None,
            args: Vec::new(),
            env: Vec::new(),
            cwd: "/".into(),
        }
    }

    /// The engine and the compiled workload: the cached artefact of `bytes` when there is one that
    /// wasmtime accepts, loaded into an engine without a compiler (building Cranelift for the host
    /// costs more than the load itself); else an engine with the compiler, which compiles `bytes` and
    /// stores the artefact.
    ///
    /// Errors: the engine cannot be built, or `bytes` do not compile (named with `path`).
    fn compile(
        &self,
        config: &Config,
        settings: &cache::EngineSettings,
        kind: WasmKind,
        bytes: &[u8],
        path: &Path,
    ) -> Result<(Engine, Artefact), ExecutorError> {
        let engine_err = |e: wasmtime::Error| ExecutorError::Wasm(format!("wasmtime engine: {e}"));
        let key = cache::key(settings, bytes);
        if let Some(data) = self.cache.get(&key) {
            let mut loader = config.clone();
            loader.enable_compiler(false);
            let engine = Engine::new(&loader).map_err(engine_err)?;
            // SAFETY: the artefact was written by amphi into its own root-only cache directory under a
            // key that names this wasmtime release and engine configuration, and its SHA-256 matches
            // the digest recorded next to it; wasmtime checks its major version, settings, tunables
            // and features, and that the host has the CPU features its code was compiled for.
            let loaded = unsafe {
                match kind {
                    WasmKind::Module => {
                        wasmtime::Module::deserialize(&engine, &data).map(Artefact::Module)
                    }
                    WasmKind::Component => {
                        wasmtime::component::Component::deserialize(&engine, &data)
                            .map(Artefact::Component)
                    }
                }
            };
            match loaded {
                Ok(a) => {
                    log::debug!("wasm cache: hit {key} ({})", path.display());
                    return Ok((engine, a));
                }
                Err(e) => log::warn!("wasm cache: entry {key} rejected ({e}); recompiling"),
            }
        }
        let engine = Engine::new(config).map_err(engine_err)?;
        let started = std::time::Instant::now();
        let (artefact, serialized) = match kind {
            WasmKind::Module => {
                let m = wasmtime::Module::new(&engine, bytes)
                    .map_err(|e| wasm_err(path, "invalid WebAssembly module", format!("{e:#}")))?;
                let s = m.serialize();
                (Artefact::Module(m), s)
            }
            WasmKind::Component => {
                let c = wasmtime::component::Component::new(&engine, bytes).map_err(|e| {
                    wasm_err(path, "invalid WebAssembly component", format!("{e:#}"))
                })?;
                let s = c.serialize();
                (Artefact::Component(c), s)
            }
        };
        log::debug!(
            "wasm cache: miss {key}; compiled {} in {:?}",
            path.display(),
            started.elapsed()
        );
        match serialized {
            Ok(data) => {
                if let Err(e) = self.cache.put(&key, &data) {
                    log::warn!(
                        "wasm cache: cannot write {}: {e}",
                        self.cache.dir().display()
                    );
                }
            }
            Err(e) => log::warn!("wasm cache: cannot serialize {}: {e}", path.display()),
        }
        Ok((engine, artefact))
    }
}

/// Links a compiled workload against WASI, checking it is a WASI command, so that a module without
/// `_start`, a component without `wasi:cli/run`, or an unknown import fails `create`.
fn link(engine: &Engine, artefact: &Artefact, path: &Path) -> Result<Runnable, ExecutorError> {
    Ok(match artefact {
        Artefact::Module(m) => {
            match m.get_export("_start") {
                Some(wasmtime::ExternType::Func(f))
                    if f.params().len() == 0 && f.results().len() == 0 => {}
                Some(wasmtime::ExternType::Func(_)) => {
                    return Err(wasm_err(
                        path,
                        "not a WASI command",
                        "`_start` must take no parameters and return no results",
                    ))
                }
                _ => {
                    return Err(wasm_err(
                        path,
                        "not a WASI command",
                        "the module exports no `_start` function",
                    ))
                }
            }
            Runnable::Module(
                p1_linker(engine)
                    .map_err(|e| wasm_err(path, "link WASI", e))?
                    .instantiate_pre(m)
                    .map_err(|e| wasm_err(path, "unsatisfied imports", format!("{e:#}")))?,
            )
        }
        Artefact::Component(c) => {
            let pre = p2_linker(engine)
                .map_err(|e| wasm_err(path, "link WASI", e))?
                .instantiate_pre(c)
                .map_err(|e| wasm_err(path, "unsatisfied imports", format!("{e:#}")))?;
            Runnable::Component(
                wasmtime_wasi::p2::bindings::CommandPre::new(pre).map_err(|e| {
                    wasm_err(
                        path,
                        "not a WASI command (no wasi:cli/run export)",
                        format!("{e:#}"),
                    )
                })?,
            )
        }
    })
}

/// A linker with WASI preview 1 (async host functions).
///
/// `proc_exit` is replaced so that every status a process can have (0..=255) becomes the container's
/// exit status; wasmtime-wasi's own treats 126..=255 as a trap. Other values still trap.
fn p1_linker(engine: &Engine) -> wasmtime::Result<wasmtime::Linker<P1State>> {
    let mut linker = wasmtime::Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut P1State| &mut s.wasi)?;
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "proc_exit",
        |_caller: wasmtime::Caller<'_, P1State>, status: i32| -> wasmtime::Result<()> {
            if (0..=255).contains(&status) {
                Err(I32Exit(status).into())
            } else {
                Err(wasmtime::Error::msg(format!(
                    "proc_exit({}): exit status outside of 0..=255",
                    status as u32
                )))
            }
        },
    )?;
    Ok(linker)
}

/// A component linker with WASI preview 2 (async host functions).
fn p2_linker(engine: &Engine) -> wasmtime::Result<wasmtime::component::Linker<P2State>> {
    let mut linker = wasmtime::component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Ok(linker)
}

struct P1State {
    wasi: WasiP1Ctx,
    limits: StoreLimits,
}

struct P2State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn finish(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: ends this (forked) process immediately with the guest's status; nothing after it runs.
    unsafe { libc::_exit(code) }
}

/// Maps the outcome of a guest's entry point to an exit status, printing traps on stderr.
fn status_of(result: wasmtime::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                return exit.0;
            }
            let _ = writeln!(std::io::stderr(), "wasm trap: {e:?}");
            TRAP_STATUS
        }
    }
}

impl WasmExecutor {
    fn wasi_builder(&self) -> Result<WasiCtxBuilder, ExecutorError> {
        let mut b = WasiCtxBuilder::new();
        b.args(&self.args);
        b.envs(&self.env);
        b.inherit_stdio();
        b.preopened_dir("/", "/", FsPerms::ReadWrite)
            .map_err(|e| ExecutorError::Wasm(format!("preopen /: {e}")))?;
        b.preopened_dir(&self.cwd, ".", FsPerms::ReadWrite)
            .map_err(|e| ExecutorError::Wasm(format!("process.cwd: preopen {}: {e}", self.cwd)))?;
        Ok(b)
    }
}

impl Executor for WasmExecutor {
    fn name(&self) -> &'static str {
        "wasm"
    }

    fn prepare(&mut self, w: &Workload<'_>) -> Result<(), ExecutorError> {
        let process = w.spec.process().as_ref().ok_or(ExecutorError::EmptyArgs)?;
        let args = process.args().clone().unwrap_or_default();
        if args.is_empty() {
            return Err(ExecutorError::EmptyArgs);
        }
        let env = process.env().clone().unwrap_or_default();
        let path =
            crate::path::locate(w.spec, w.rootfs).ok_or_else(|| ExecutorError::NotFound {
                name: args[0].clone(),
                path: crate::path::search_path(w.spec),
            })?;
        // Errors name the file as the container sees it.
        let shown = Path::new("/").join(path.strip_prefix(w.rootfs).unwrap_or(&path));
        let bytes = std::fs::read(&path).map_err(|e| wasm_err(&shown, "read", e))?;
        let kind = detect::sniff(&bytes[..bytes.len().min(4096)]).ok_or_else(|| {
            wasm_err(
                &shown,
                "not a WebAssembly module or component",
                "no \\0asm header and no WAT text",
            )
        })?;
        let memory_limit = w
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .filter(|l| *l > 0)
            .map(|l| l as usize);
        let t0 = std::time::Instant::now();
        let settings = cache::EngineSettings {
            memory_reservation: memory_reservation(w.spec, memory_limit),
            // As wasmtime reads it by default (`WasmBacktraceDetails::Environment`).
            backtrace_details: std::env::var("WASMTIME_BACKTRACE_DETAILS").is_ok_and(|v| v == "1"),
        };
        let (engine, artefact) =
            self.compile(&engine_config(&settings), &settings, kind, &bytes, &shown)?;
        let t1 = std::time::Instant::now();
        let runnable = link(&engine, &artefact, &shown)?;
        log::debug!(
            "wasm prepare: engine and load/compile {:?}, check {:?}",
            t1 - t0,
            t1.elapsed()
        );
        self.args = args;
        self.env = env
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect();
        self.cwd = process.cwd().to_string_lossy().into_owned();
        self.prepared = Some(Prepared {
            engine,
            runnable,
            memory_limit,
        });
        Ok(())
    }

    fn load(&mut self, _spec: &Spec) -> Result<(), ExecutorError> {
        hide_proc()
    }

    fn exec(&mut self, notify_started: &mut dyn FnMut()) -> Result<Infallible, ExecutorError> {
        let prepared = self
            .prepared
            .take()
            .ok_or_else(|| ExecutorError::Wasm("workload was not prepared".into()))?;
        let mut limits = StoreLimitsBuilder::new();
        if let Some(m) = prepared.memory_limit {
            limits = limits.memory_size(m);
        }
        let limits = limits.build();
        let t0 = std::time::Instant::now();
        let builder = self.wasi_builder();
        let mut builder = builder?;
        // pid 1 of its pid namespace: without handlers, `kill` with TERM, INT or HUP would do nothing.
        crate::signals::exit_on_stop_signals();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .enable_io()
            .build()
            .map_err(|e| ExecutorError::Wasm(format!("tokio runtime: {e}")))?;
        let code = rt.block_on(async {
            match &prepared.runnable {
                Runnable::Module(pre) => {
                    let mut store = Store::new(
                        &prepared.engine,
                        P1State {
                            wasi: builder.build_p1(),
                            limits,
                        },
                    );
                    store.limiter(|s| &mut s.limits);
                    let instance = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(|e| ExecutorError::Wasm(format!("instantiate: {e:#}")))?;
                    let start = instance
                        .get_typed_func::<(), ()>(&mut store, "_start")
                        .map_err(|e| ExecutorError::Wasm(format!("_start: {e:#}")))?;
                    log::debug!("wasm exec: instantiated in {:?}", t0.elapsed());
                    notify_started();
                    let code = status_of(start.call_async(&mut store, ()).await);
                    // The process ends right after (`finish`): unmapping the linear memory and
                    // closing the WASI context's files one by one would only delay the exit status.
                    std::mem::forget(store);
                    Ok::<i32, ExecutorError>(code)
                }
                Runnable::Component(pre) => {
                    let mut store = Store::new(
                        &prepared.engine,
                        P2State {
                            wasi: builder.build(),
                            table: ResourceTable::new(),
                            limits,
                        },
                    );
                    store.limiter(|s| &mut s.limits);
                    let command = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(|e| ExecutorError::Wasm(format!("instantiate: {e:#}")))?;
                    log::debug!("wasm exec: instantiated in {:?}", t0.elapsed());
                    notify_started();
                    let code = match command.wasi_cli_run().call_run(&mut store).await {
                        Ok(Ok(())) => 0,
                        Ok(Err(())) => 1,
                        Err(e) => status_of(Err(e)),
                    };
                    // As above: the process ends right after.
                    std::mem::forget(store);
                    Ok(code)
                }
            }
        })?;
        finish(code)
    }
}

/// Mounts an empty read-only tmpfs over `/proc` (when it is a procfs mount), so that the guest, which
/// runs inside the runtime's own process, cannot open `/proc/self/mem`, `/proc/self/exe` or
/// `/proc/<pid>/...` through its preopened `/`.
///
/// Errors: the mount fails.
pub fn hide_proc() -> Result<(), ExecutorError> {
    let is_proc = nix::sys::statfs::statfs("/proc")
        .map(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
        .unwrap_or(false);
    if !is_proc {
        return Ok(());
    }
    nix::mount::mount(
        Some("tmpfs"),
        "/proc",
        Some("tmpfs"),
        nix::mount::MsFlags::MS_RDONLY
            | nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        Some("size=0k,nr_inodes=1,mode=555"),
    )
    .map_err(|e| ExecutorError::Wasm(format!("hide /proc from the guest: {e}")))
}
