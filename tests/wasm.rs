//! Wasm workloads (issue 3): which executor runs a container, and what a WASI guest sees and does
//! inside it: args, env, files and escape attempts, stdio, exit codes, signals, memory limits, the AOT
//! cache, components, and bad modules refused at `create`.
//!
//! The guests are WebAssembly text (tests/wasm/tool.wat, a small command interpreter), turned into
//! binary modules with the `wat` crate and into a WASI preview 2 component with `wit-component` and the
//! preview1 command adapter. Every amphi call passes its own `--wasm-cache-dir` inside the test's
//! temporary directory.

mod common;

use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    amphi_bin, assert_no_leftovers, read_until, recv_fd, stderr, stdout, wait_for, Bundle,
};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::{json, Value};

/// The test guest, in WebAssembly text.
const TOOL_WAT: &str = include_str!("wasm/tool.wat");

/// What only the wasm guest prints (through `echo`): busybox has no file that would print it.
const WASM_ONLY: &str = "printed-by-the-wasm-guest";

/// What only the Linux workload prints.
const LINUX_ONLY: &str = "printed-by-busybox";

/// Contents of `/data/in.txt` in every test rootfs.
const DATA: &str = "inside-data";

/// How long a test waits for output or an exit before failing instead of hanging.
const HANG_GUARD: Duration = Duration::from_secs(60);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The test guest as a binary module.
fn tool_wasm() -> Vec<u8> {
    wat::parse_str(TOOL_WAT).expect("tests/wasm/tool.wat does not assemble")
}

/// The test guest as a WASI preview 2 command component (preview1 module + command adapter).
fn tool_component() -> Vec<u8> {
    wit_component::ComponentEncoder::default()
        .module(&tool_wasm())
        .expect("module for the component encoder")
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )
        .expect("preview1 command adapter")
        .validate(true)
        .encode()
        .expect("encode the component")
}

/// A busybox bundle running `args`, with the guests in its rootfs:
/// `/tool.wat` (text), `/tool.wasm` (binary), `/app/guest` (binary, no suffix), `/app/guest-text`
/// (text, no suffix), and `/data/in.txt`.
fn bundle(name: &str, args: &[&str]) -> Bundle {
    let b = Bundle::new(name, args);
    let r = b.rootfs();
    std::fs::create_dir_all(r.join("app")).unwrap();
    std::fs::create_dir_all(r.join("data")).unwrap();
    let bin = tool_wasm();
    std::fs::write(r.join("tool.wat"), TOOL_WAT).unwrap();
    std::fs::write(r.join("tool.wasm"), &bin).unwrap();
    std::fs::write(r.join("app/guest"), &bin).unwrap();
    std::fs::write(r.join("app/guest-text"), TOOL_WAT).unwrap();
    std::fs::write(r.join("data/in.txt"), DATA).unwrap();
    b
}

/// The AOT cache directory of `b`'s test (inside its temporary directory).
fn cache_dir(b: &Bundle) -> PathBuf {
    b.dir.parent().unwrap().join("wasm-cache")
}

/// Runs `<bin> --root <root> --wasm-cache-dir <cache> <args...>` and returns its output (through
/// files, as the harness does: a container may inherit them).
fn amphi_as(bin: &Path, b: &Bundle, args: &[&str]) -> Output {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let out_path = b.dir.join(format!(".wasm-out-{n}"));
    let err_path = b.dir.join(format!(".wasm-err-{n}"));
    let status = Command::new(bin)
        .arg("--root")
        .arg(&b.root)
        .arg("--wasm-cache-dir")
        .arg(cache_dir(b))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .unwrap();
    let out = Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    };
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    out
}

/// `amphi` with this test's cache directory.
fn amphi(b: &Bundle, args: &[&str]) -> Output {
    amphi_as(Path::new(amphi_bin()), b, args)
}

/// `run` in the foreground, config written first, with `extra` global flags.
fn run_with(b: &Bundle, extra: &[&str]) -> Output {
    b.write_config();
    let dir = b.dir.to_str().unwrap();
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["run", "--bundle", dir, &b.id]);
    amphi(b, &args)
}

fn run(b: &Bundle) -> Output {
    run_with(b, &[])
}

/// `run` with `--debug --log <log>`; returns the output and the log text.
fn run_logged(b: &Bundle, log: &Path) -> (Output, String) {
    let _ = std::fs::remove_file(log);
    let out = run_with(b, &["--debug", "--log", log.to_str().unwrap()]);
    (out, std::fs::read_to_string(log).unwrap_or_default())
}

fn create(b: &Bundle) -> Output {
    b.write_config();
    amphi(b, &["create", "--bundle", b.dir.to_str().unwrap(), &b.id])
}

/// Args that make the guest at `path` print [`WASM_ONLY`].
fn wasm_echo(path: &str) -> Vec<&str> {
    vec![path, "echo", WASM_ONLY]
}

/// Args that make busybox print [`LINUX_ONLY`].
fn linux_echo() -> Vec<&'static str> {
    vec!["/bin/sh", "-c", "echo printed-by-busybox"]
}

fn set_args(b: &mut Bundle, args: &[&str]) {
    b.config["process"]["args"] = json!(args);
}

fn set_annotations(b: &mut Bundle, annotations: &[(&str, &str)]) {
    let mut map = serde_json::Map::new();
    for (k, v) in annotations {
        map.insert(k.to_string(), json!(v));
    }
    b.config["annotations"] = Value::Object(map);
}

/// The run of `b` was the wasm guest: it printed [`WASM_ONLY`] and exited 0.
#[track_caller]
fn assert_ran_wasm(out: &Output, what: &str) {
    assert_eq!(
        (out.status.code(), stdout(out)),
        (Some(0), format!("{WASM_ONLY}\n")),
        "{what}: expected the wasm guest to run; stderr: {}",
        stderr(out)
    );
}

/// The run of `b` was busybox: it printed [`LINUX_ONLY`] and exited 0.
#[track_caller]
fn assert_ran_linux(out: &Output, what: &str) {
    assert_eq!(
        (out.status.code(), stdout(out)),
        (Some(0), format!("{LINUX_ONLY}\n")),
        "{what}: expected busybox to run natively; stderr: {}",
        stderr(out)
    );
}

/// The run failed at `create` because the wasm executor was chosen for an ELF binary (`/bin/sh`):
/// proof that the wasm executor, not the Linux one, was picked.
#[track_caller]
fn assert_wasm_chosen_for_elf(out: &Output, b: &Bundle, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(!stdout(out).contains(LINUX_ONLY), "{what}: busybox ran");
    assert!(
        err.contains("process.args[0]") && err.contains("not a WebAssembly"),
        "{what}: expected the wasm executor to refuse /bin/sh: {err}"
    );
    assert_no_leftovers(b);
}

/// A spawned process that is killed (by its pid) and reaped if the test ends before it.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn try_wait(&mut self) -> Option<ExitStatus> {
        let st = self.0.as_mut()?.try_wait().unwrap();
        if st.is_some() {
            self.0 = None;
        }
        st
    }

    /// Waits for the exit, failing the test after [`HANG_GUARD`].
    fn wait(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Some(st) = self.try_wait() {
                return st;
            }
            assert!(Instant::now() < deadline, "{what} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `amphi run` of `b` in the background with stdout and stderr in files of the bundle dir.
fn spawn_run(b: &Bundle, out: &Path, err: &Path) -> ChildGuard {
    b.write_config();
    let child = Command::new(amphi_bin())
        .arg("--root")
        .arg(&b.root)
        .arg("--wasm-cache-dir")
        .arg(cache_dir(b))
        .args(["run", "--bundle", b.dir.to_str().unwrap(), &b.id])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(err).unwrap())
        .spawn()
        .unwrap();
    ChildGuard(Some(child))
}

/// The SHA-256 of `path` in hex, by coreutils' sha256sum.
fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum: {out:?}");
    stdout(&out).split_whitespace().next().unwrap().to_string()
}

/// The key in a `wasm cache: <what> <key>` record of `log`.
fn cache_key(log: &str, what: &str) -> Option<String> {
    let marker = format!("wasm cache: {what} ");
    let at = log.find(&marker)? + marker.len();
    let key: String = log[at..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
        .collect();
    (!key.is_empty()).then_some(key)
}

// ---------------------------------------------------------------------------------------------
// Which executor runs a container.

/// `run.oci.handler=wasm` and `=wasmtime` run wasm: a guest without a suffix runs, and an ELF binary
/// is handed to wasmtime (and refused at create) instead of being executed.
#[test]
fn handler_annotation_forces_wasm() {
    for handler in ["wasm", "wasmtime"] {
        let mut b = bundle("handler", &wasm_echo("/app/guest-text"));
        set_annotations(&mut b, &[("run.oci.handler", handler)]);
        assert_ran_wasm(&run(&b), &format!("run.oci.handler={handler}"));

        let mut b = bundle("handler-elf", &linux_echo());
        set_annotations(&mut b, &[("run.oci.handler", handler)]);
        let out = run(&b);
        assert_wasm_chosen_for_elf(&out, &b, &format!("run.oci.handler={handler}, /bin/sh"));
    }
}

/// `module.wasm.image/variant=compat` runs wasm, for a guest and for an ELF binary alike.
#[test]
fn variant_compat_forces_wasm() {
    let mut b = bundle("compat", &wasm_echo("/app/guest"));
    set_annotations(&mut b, &[("module.wasm.image/variant", "compat")]);
    assert_ran_wasm(&run(&b), "variant=compat");

    let mut b = bundle("compat-elf", &linux_echo());
    set_annotations(&mut b, &[("module.wasm.image/variant", "compat")]);
    let out = run(&b);
    assert_wasm_chosen_for_elf(&out, &b, "variant=compat, /bin/sh");
}

/// `*-smart` handlers decide by the suffix of args[0]: `.wasm` and `.wat` run wasm, `/bin/sh` runs
/// natively, and a wasm binary without the suffix is not run as wasm (the suffix rule, not the
/// content, decides).
#[test]
fn smart_annotations_decide_by_suffix() {
    for (key, value) in [
        ("run.oci.handler", "wasm-smart"),
        ("module.wasm.image/variant", "compat-smart"),
    ] {
        let what = format!("{key}={value}");
        for path in ["/tool.wasm", "/tool.wat"] {
            let mut b = bundle("smart", &wasm_echo(path));
            set_annotations(&mut b, &[(key, value)]);
            assert_ran_wasm(&run(&b), &format!("{what}, {path}"));
        }
        let mut b = bundle("smart-sh", &linux_echo());
        set_annotations(&mut b, &[(key, value)]);
        assert_ran_linux(&run(&b), &format!("{what}, /bin/sh"));

        let mut b = bundle("smart-nosuffix", &wasm_echo("/app/guest"));
        set_annotations(&mut b, &[(key, value)]);
        let out = run(&b);
        assert!(
            !out.status.success() && !stdout(&out).contains(WASM_ONLY),
            "{what}: /app/guest (no suffix) must not run as wasm: {out:?}"
        );
    }
}

/// The handler annotation is looked at before the variant annotation.
#[test]
fn handler_annotation_comes_before_variant() {
    let mut b = bundle("order", &linux_echo());
    set_annotations(
        &mut b,
        &[
            ("run.oci.handler", "wasm-smart"),
            ("module.wasm.image/variant", "compat"),
        ],
    );
    assert_ran_linux(&run(&b), "handler=wasm-smart before variant=compat");
}

/// A Kubernetes sandbox (pause) container is always native, whatever wasm annotations it carries
/// and even through the `amphi-wasm` alias.
#[test]
fn sandbox_container_with_wasm_annotations_runs_natively() {
    let annotations = [
        ("io.kubernetes.cri.container-type", "sandbox"),
        ("run.oci.handler", "wasm"),
        ("module.wasm.image/variant", "compat"),
    ];
    let mut b = bundle("sandbox", &linux_echo());
    set_annotations(&mut b, &annotations);
    assert_ran_linux(&run(&b), "sandbox with wasm annotations");

    let links = tempfile::tempdir().unwrap();
    let alias = links.path().join("amphi-wasm");
    std::os::unix::fs::symlink(amphi_bin(), &alias).unwrap();
    let mut b = bundle("sandbox-alias", &linux_echo());
    set_annotations(&mut b, &annotations);
    b.write_config();
    let out = amphi_as(
        &alias,
        &b,
        &["run", "--bundle", b.dir.to_str().unwrap(), &b.id],
    );
    assert_ran_linux(&out, "sandbox through amphi-wasm");
}

/// amphi invoked as `amphi-wasm` (a symlink) runs wasm without any annotation, even for an ELF
/// binary; the same binary under another name runs that ELF binary natively.
#[test]
fn amphi_wasm_alias_forces_wasm() {
    let links = tempfile::tempdir().unwrap();
    let alias = links.path().join("amphi-wasm");
    let other = links.path().join("amphi-other");
    std::os::unix::fs::symlink(amphi_bin(), &alias).unwrap();
    std::os::unix::fs::symlink(amphi_bin(), &other).unwrap();

    let b = bundle("alias", &wasm_echo("/app/guest"));
    b.write_config();
    let dir = b.dir.to_str().unwrap();
    assert_ran_wasm(
        &amphi_as(&alias, &b, &["run", "--bundle", dir, &b.id]),
        "amphi-wasm",
    );

    let b = bundle("alias-elf", &linux_echo());
    b.write_config();
    let dir = b.dir.to_str().unwrap();
    let out = amphi_as(&alias, &b, &["run", "--bundle", dir, &b.id]);
    assert_wasm_chosen_for_elf(&out, &b, "amphi-wasm, /bin/sh");

    let b = bundle("alias-other", &linux_echo());
    b.write_config();
    let dir = b.dir.to_str().unwrap();
    assert_ran_linux(
        &amphi_as(&other, &b, &["run", "--bundle", dir, &b.id]),
        "amphi-other, /bin/sh",
    );
}

/// Without annotations the file args[0] resolves to decides: the `\0asm` magic or WAT text is wasm,
/// with or without a suffix, also when found through `$PATH`.
#[test]
fn content_detection_without_annotations() {
    for path in ["/tool.wasm", "/tool.wat", "/app/guest", "/app/guest-text"] {
        let b = bundle("content", &wasm_echo(path));
        assert_ran_wasm(&run(&b), &format!("no annotation, {path}"));
    }
    let mut b = bundle("content-path", &wasm_echo("guest"));
    b.config["process"]["env"] = json!(["PATH=/app:/bin"]);
    assert_ran_wasm(&run(&b), "no annotation, `guest` through $PATH");

    let b = bundle("content-sh", &linux_echo());
    assert_ran_linux(&run(&b), "no annotation, /bin/sh");
}

// ---------------------------------------------------------------------------------------------
// Args and environment.

/// The guest's argv is process.args exactly, args[0] included.
#[test]
fn args_are_passed_as_given() {
    let args = [
        "/tool.wat",
        "args",
        "with space",
        "",
        "  lead and trail  ",
        "a=b=c",
        "ünïcødé ✓",
        "--flag",
        "tab\there",
    ];
    let b = bundle("args", &args);
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let mut want = Vec::new();
    for a in args {
        want.extend_from_slice(a.as_bytes());
        want.push(0);
    }
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(out.stdout, want);
}

/// The guest's environment is process.env byte for byte, in order, and nothing else.
#[test]
fn env_is_exactly_process_env() {
    let env = [
        "PATH=/usr/bin:/bin",
        "SPACES=a b  c",
        "EQUALS=x=y==z=",
        "TRAILING=value   ",
        "LEADING=   value",
        "EMPTY=",
        "UTF8=héllo wörld ✓ 日本",
        "lower_case=1",
        "RUST_LOG=trace",
    ];
    let mut b = bundle("env", &["/tool.wasm", "env"]);
    b.config["process"]["env"] = json!(env);
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let mut want = Vec::new();
    for e in env {
        want.extend_from_slice(e.as_bytes());
        want.push(0);
    }
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(out.stdout, want);

    // An empty process.env gives an empty environment (no HOME, TERM, PATH added).
    let mut b = bundle("env-empty", &["/tool.wasm", "env"]);
    b.config["process"]["env"] = json!([]);
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "");
}

/// Normalises a debug log for comparison: the message of each record, with ids and paths of the
/// test replaced.
fn log_messages(log: &str, b: &Bundle) -> Vec<String> {
    let tmp = b.root.parent().unwrap().to_str().unwrap().to_string();
    log.lines()
        .map(|l| {
            let l = l.replace(&tmp, "<tmp>").replace(&b.id, "<id>");
            match l.find(" level=") {
                Some(i) => l[i..].to_string(),
                None => l,
            }
        })
        .map(|l| {
            // Durations of compiles and pids vary between runs.
            l.split_whitespace()
                .filter(|w| !w.chars().any(|c| c.is_ascii_digit()) || w.starts_with("level="))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// `RUST_LOG=trace` in the container's env reaches the guest only: amphi's own log output (stderr
/// without --log, the --debug log file with it) is the same as without it.
#[test]
fn rust_log_in_container_env_does_not_change_amphi_logging() {
    let mut b = bundle("rustlog", &["/tool.wasm", "echo", "quiet", "env"]);
    let log = b.dir.join("amphi.log");
    // Warm the cache so that both compared runs take the same path.
    b.config["process"]["env"] = json!(["A=1"]);
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0), "warm-up: {}", stderr(&out));

    let (plain, plain_log) = run_logged(&b, &log);
    assert_eq!(stdout(&plain), "quiet\nA=1\0");

    b.config["process"]["env"] = json!(["A=1", "RUST_LOG=trace", "RUST_BACKTRACE=full"]);
    let (traced, traced_log) = run_logged(&b, &log);
    assert_eq!(
        stdout(&traced),
        "quiet\nA=1\0RUST_LOG=trace\0RUST_BACKTRACE=full\0",
        "the guest sees RUST_LOG; stderr: {}",
        stderr(&traced)
    );
    assert_eq!(stderr(&traced), "", "nothing on stderr with --log");
    assert!(
        !traced_log.contains("level=trace"),
        "trace records in amphi's log: {traced_log}"
    );
    assert_eq!(
        log_messages(&plain_log, &b),
        log_messages(&traced_log, &b),
        "the --debug log changed with RUST_LOG in the container's env"
    );

    // Without --log, amphi's records would go to stderr: there are none.
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out), "", "amphi logged to stderr");
}

// ---------------------------------------------------------------------------------------------
// Files: the guest's view of the rootfs, read-only mounts, escapes.

/// The guest reads and writes files of the rootfs, by absolute paths and relative to process.cwd.
#[test]
fn guest_reads_and_writes_files_in_the_rootfs() {
    let mut b = bundle(
        "files",
        &[
            "/tool.wasm",
            "cat",
            "/data/in.txt",
            "cat",
            "rel.txt",
            "write",
            "/tmp/abs-out",
            "written absolutely",
            "write",
            "rel-out",
            "written relatively",
            "cat",
            "/tmp/abs-out",
            "cat",
            "/work/rel-out",
            "cat",
            "/data/missing",
        ],
    );
    b.config["root"]["readonly"] = json!(false);
    b.config["process"]["cwd"] = json!("/work");
    let work = b.rootfs().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("rel.txt"), "relative-data").unwrap();
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "ok:{DATA}\nok:relative-data\nok\nok\nok:written absolutely\n\
             ok:written relatively\nerr:44\n"
        )
    );
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("tmp/abs-out")).unwrap(),
        "written absolutely"
    );
    assert_eq!(
        std::fs::read_to_string(work.join("rel-out")).unwrap(),
        "written relatively"
    );
}

/// A read-only rootfs stays read-only for the guest (absolute and relative writes fail), and so
/// does a read-only bind mount in a writable rootfs.
#[test]
fn readonly_rootfs_and_mounts_stay_readonly() {
    let mut b = bundle(
        "ro",
        &[
            "/tool.wasm",
            "write",
            "/tmp/new",
            "x",
            "write",
            "data/in.txt",
            "overwritten",
            "cat",
            "/data/in.txt",
        ],
    );
    assert_eq!(b.config["root"]["readonly"], json!(true));
    b.config["process"]["cwd"] = json!("/");
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text:?}");
    assert!(lines[0].starts_with("err:"), "write /tmp/new: {text:?}");
    assert!(lines[1].starts_with("err:"), "write data/in.txt: {text:?}");
    assert_eq!(lines[2], format!("ok:{DATA}"));
    assert!(!b.rootfs().join("tmp/new").exists());
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("data/in.txt")).unwrap(),
        DATA
    );

    // A writable rootfs with a read-only bind mount.
    let mut b = bundle(
        "robind",
        &[
            "/tool.wasm",
            "write",
            "/tmp/new",
            "fine",
            "write",
            "/ro/file",
            "overwritten",
            "write",
            "/ro/other",
            "new",
            "cat",
            "/ro/file",
        ],
    );
    let host = b.dir.parent().unwrap().join("ro-source");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("file"), "host-file").unwrap();
    std::fs::create_dir_all(b.rootfs().join("ro")).unwrap();
    b.config["root"]["readonly"] = json!(false);
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/ro", "type": "bind",
                     "source": host.to_str().unwrap(), "options": ["rbind", "ro"]}));
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text:?}");
    assert_eq!(lines[0], "ok", "write in the writable rootfs: {text:?}");
    assert!(lines[1].starts_with("err:"), "write /ro/file: {text:?}");
    assert!(lines[2].starts_with("err:"), "write /ro/other: {text:?}");
    assert_eq!(lines[3], "ok:host-file");
    assert_eq!(
        std::fs::read_to_string(host.join("file")).unwrap(),
        "host-file"
    );
    assert!(!host.join("other").exists());
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("tmp/new")).unwrap(),
        "fine"
    );
}

/// `..` above `/`, absolute and relative symlinks pointing out of the rootfs, a symlinked directory
/// pointing out, and the host path of a file outside the rootfs: none reaches the canary file in the
/// bundle directory (outside the rootfs). A symlink that stays inside works.
#[test]
fn guest_cannot_escape_the_rootfs() {
    let b0 = bundle("escape", &["/tool.wasm"]);
    let canary = b0.dir.join("canary");
    let canary_text = "CANARY-OUTSIDE-THE-ROOTFS";
    std::fs::write(&canary, canary_text).unwrap();
    let r = b0.rootfs();
    std::os::unix::fs::symlink(&canary, r.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../canary", r.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("../../canary", r.join("data/deep-link")).unwrap();
    std::os::unix::fs::symlink("..", r.join("up-dir")).unwrap();
    std::os::unix::fs::symlink(b0.dir.as_path(), r.join("abs-dir")).unwrap();
    std::os::unix::fs::symlink("data/in.txt", r.join("in-link")).unwrap();
    let host_path = canary.to_str().unwrap().to_string();
    let attempts: Vec<String> = vec![
        "/../canary".into(),
        "../canary".into(),
        "/../../../../../canary".into(),
        "data/../../canary".into(),
        host_path.clone(),
        "/abs-link".into(),
        "abs-link".into(),
        "/rel-link".into(),
        "/data/deep-link".into(),
        "/up-dir/canary".into(),
        "/abs-dir/canary".into(),
    ];
    let mut args: Vec<String> = vec!["/tool.wasm".into()];
    for a in &attempts {
        args.push("cat".into());
        args.push(a.clone());
    }
    for a in ["/rel-link", "/abs-link", "/up-dir/planted", "../planted"] {
        args.extend(["write".into(), a.into(), "PWNED".into()]);
    }
    args.extend(["cat".into(), "/in-link".into()]);
    let mut b = b0;
    b.config["root"]["readonly"] = json!(false);
    set_args(&mut b, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains(canary_text), "the canary was read: {text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), attempts.len() + 5, "{text:?}");
    for (i, a) in attempts.iter().enumerate() {
        assert!(lines[i].starts_with("err:"), "cat {a}: {}", lines[i]);
    }
    for (i, line) in lines[attempts.len()..attempts.len() + 4].iter().enumerate() {
        assert!(line.starts_with("err:"), "write #{i}: {line}");
    }
    assert_eq!(lines[attempts.len() + 4], format!("ok:{DATA}"), "in-link");
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), canary_text);
    assert!(
        !b.dir.join("planted").exists(),
        "a file was planted outside"
    );
}

/// The guest runs inside amphi's own process, but /proc does not lead to it: /proc/self/mem,
/// /proc/self/exe, /proc/self/status, /proc/1/... are unreachable, while a Linux workload with the
/// same config sees /proc.
#[test]
fn guest_cannot_reach_the_runtime_through_proc() {
    let paths = [
        "/proc/self/status",
        "/proc/self/exe",
        "/proc/self/mem",
        "/proc/self/maps",
        "/proc/self/environ",
        "/proc/1/environ",
        "/proc/1/cmdline",
        "/proc/1/exe",
        "/proc/1/mem",
        "/proc/thread-self/status",
        "proc/self/status",
    ];
    let mut args = vec!["/tool.wasm"];
    for p in paths {
        args.extend(["cat", p]);
    }
    args.extend(["write", "/proc/self/mem", "x", "cat", "/etc/passwd"]);
    let b = bundle("proc", &args);
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= paths.len() + 2, "{text:?}");
    for (i, p) in paths.iter().enumerate() {
        assert!(
            lines[i].starts_with("err:"),
            "cat {p} succeeded: {}",
            lines[i]
        );
    }
    assert!(
        lines[paths.len()].starts_with("err:"),
        "write /proc/self/mem: {}",
        lines[paths.len()]
    );
    assert!(
        lines[paths.len() + 1].starts_with("ok:root:x:0:0:"),
        "/etc/passwd: {text:?}"
    );

    // Control: the same config with busybox sees its /proc.
    let b = bundle(
        "proc-linux",
        &["/bin/sh", "-c", "head -1 /proc/self/status"],
    );
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(stdout(&out).starts_with("Name:"), "{}", stdout(&out));
}

// ---------------------------------------------------------------------------------------------
// stdio.

/// Stdout through a pipe: every line arrives, in order, and the guest does not see a terminal.
#[test]
fn stdout_through_a_pipe() {
    let lines: Vec<String> = (0..120).map(|i| format!("line-{i:04}")).collect();
    let mut args: Vec<&str> = vec!["/tool.wasm", "ftype", "1"];
    for l in &lines {
        args.extend(["echo", l.as_str()]);
    }
    let b = bundle("pipe", &args);
    b.write_config();
    let out = Command::new(amphi_bin())
        .arg("--root")
        .arg(&b.root)
        .arg("--wasm-cache-dir")
        .arg(cache_dir(&b))
        .args(["run", "--bundle", b.dir.to_str().unwrap(), &b.id])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let mut got = text.lines();
    let ftype = got.next().unwrap_or_default();
    assert!(
        ftype.starts_with("ftype:") && ftype != "ftype:2",
        "stdout is a pipe, not a character device: {ftype}"
    );
    let rest: Vec<&str> = got.collect();
    assert_eq!(rest, lines.iter().map(String::as_str).collect::<Vec<_>>());
}

/// With process.terminal the guest's stdout is the pty whose master amphi hands over the console
/// socket: the guest sees a character device and its output arrives on the master.
#[test]
fn stdout_through_the_console_socket_terminal() {
    let mut b = bundle(
        "console",
        &["/tool.wasm", "ftype", "1", "echo", "on-the-terminal"],
    );
    b.config["process"]["terminal"] = json!(true);
    let sock_path = b.dir.join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    b.write_config();
    let out = amphi(
        &b,
        &[
            "create",
            "--bundle",
            b.dir.to_str().unwrap(),
            "--console-socket",
            sock_path.to_str().unwrap(),
            &b.id,
        ],
    );
    assert!(out.status.success(), "create: {}", stderr(&out));
    listener.set_nonblocking(true).unwrap();
    let (conn, _) = listener
        .accept()
        .expect("create returned without connecting to the console socket");
    conn.set_nonblocking(false).unwrap();
    let master = recv_fd(conn.as_fd());
    drop(conn);
    drop(listener);
    let _ = std::fs::remove_file(&sock_path);
    let out = amphi(&b, &["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let mut acc = String::new();
    read_until(master.as_fd(), &mut acc, "on-the-terminal");
    assert!(acc.contains("ftype:2"), "the guest's stdout: {acc:?}");
    assert!(
        wait_for(|| b.state().is_some_and(|s| s["status"] == "stopped")),
        "the container did not stop"
    );
}

/// Without process.terminal, a foreground run whose stdio is a terminal gives the guest that
/// terminal: the guest sees a character device, its output arrives on the master, and the status
/// comes back.
#[test]
fn stdout_through_an_inherited_terminal() {
    let b = bundle(
        "pty",
        &[
            "/tool.wasm",
            "ftype",
            "1",
            "echo",
            "on-the-pty",
            "exit",
            "5",
        ],
    );
    b.write_config();
    let pty = nix::pty::openpty(None, None).unwrap();
    let master = pty.master;
    let slave = pty.slave;
    let child = Command::new(amphi_bin())
        .arg("--root")
        .arg(&b.root)
        .arg("--wasm-cache-dir")
        .arg(cache_dir(&b))
        .args(["run", "--bundle", b.dir.to_str().unwrap(), &b.id])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()))
        .spawn()
        .unwrap();
    drop(slave);
    let mut child = ChildGuard(Some(child));
    let mut acc = String::new();
    read_until(master.as_fd(), &mut acc, "on-the-pty");
    assert!(acc.contains("ftype:2"), "the guest's stdout: {acc:?}");
    let deadline = Instant::now() + HANG_GUARD;
    let status = loop {
        if let Some(st) = child.try_wait() {
            break st;
        }
        assert!(Instant::now() < deadline, "amphi run did not exit");
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if let Ok(n) = poll(&mut fds, PollTimeout::from(50u16)) {
            if n > 0 {
                let mut buf = [0u8; 4096];
                if let Ok(n) = nix::unistd::read(master.as_fd(), &mut buf) {
                    acc.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        }
    };
    assert_eq!(status.code(), Some(5), "output: {acc:?}");
}

// ---------------------------------------------------------------------------------------------
// Exit status and signals.

/// Returning from `_start` is 0, `proc_exit(7)` is 7, and a trap is 134 with the trap on stderr
/// after all the output written before it.
#[test]
fn exit_codes() {
    let b = bundle("exit0", &["/tool.wasm", "echo", "returning"]);
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "returning\n");

    let b = bundle("exit7", &["/tool.wasm", "echo", "exiting", "exit", "7"]);
    let out = run(&b);
    assert_eq!(out.status.code(), Some(7), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "exiting\n");

    let b = bundle(
        "trap",
        &["/tool.wasm", "echo", "before-trap", "trap", "echo", "after"],
    );
    let out = run(&b);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(134), "stderr: {err}");
    assert_eq!(stdout(&out), "before-trap\n");
    assert!(
        err.contains("unreachable"),
        "trap message on stderr: {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Waits up to [`HANG_GUARD`] for `cond` (for waits that include a create under load).
fn wait_long(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + HANG_GUARD;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Runs a guest that spins in a loop with no host calls in the foreground, sends it `signal` with
/// `amphi kill` once it runs, and returns the status of `amphi run`.
fn kill_spinning_run(name: &str, signal: Option<&str>) -> ExitStatus {
    let b = bundle(name, &["/tool.wasm", "echo", "spinning", "spin"]);
    let out_path = b.dir.join("run.out");
    let err_path = b.dir.join("run.err");
    let mut child = spawn_run(&b, &out_path, &err_path);
    assert!(
        wait_long(|| std::fs::read_to_string(&out_path).is_ok_and(|s| s.contains("spinning"))),
        "the guest did not start: {}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    assert_eq!(b.state().unwrap()["status"], "running");
    let mut args = vec!["kill", b.id.as_str()];
    args.extend(signal);
    let out = amphi(&b, &args);
    assert!(out.status.success(), "kill: {}", stderr(&out));
    let status = child.wait("amphi run after the signal");
    assert!(!b.root.join(&b.id).exists(), "state dir left");
    assert!(b.cgroup_dirs().is_empty(), "cgroup left");
    status
}

/// `amphi kill ID` (SIGTERM by default) stops a guest spinning in a loop, although it is pid 1 of its
/// pid namespace (where signals without a handler are ignored): a foreground run exits 143.
#[test]
fn sigterm_stops_a_looping_guest() {
    assert_eq!(kill_spinning_run("sigterm", None).code(), Some(143));
}

/// SIGINT and SIGHUP stop a looping guest with 128+signal.
#[test]
fn sigint_and_sighup_stop_a_looping_guest() {
    assert_eq!(kill_spinning_run("sigint", Some("INT")).code(), Some(130));
    assert_eq!(
        kill_spinning_run("sighup", Some("SIGHUP")).code(),
        Some(129)
    );
}

/// SIGKILL stops a created-and-started looping guest; the container is then stopped and deletable.
#[test]
fn sigkill_stops_a_looping_guest() {
    let b = bundle("sigkill", &["/tool.wasm", "spin"]);
    let out = create(&b);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = amphi(&b, &["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    assert_eq!(b.state().unwrap()["status"], "running");
    let out = amphi(&b, &["kill", &b.id, "KILL"]);
    assert!(out.status.success(), "kill KILL: {}", stderr(&out));
    assert!(
        wait_long(|| b.state().is_some_and(|s| s["status"] == "stopped")),
        "SIGKILL did not stop the guest"
    );
    let out = amphi(&b, &["delete", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert!(b.cgroup_dirs().is_empty(), "cgroup left");
    assert!(b.state().is_none());
}

// ---------------------------------------------------------------------------------------------
// Memory.

/// Parses the guest's `grew:<pages> <fail|cap>` line.
fn grew(text: &str) -> (u64, String) {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("grew:"))
        .unwrap_or_else(|| panic!("no grew: line in {text:?}"));
    let (pages, how) = line.split_once(' ').unwrap();
    (pages.parse().unwrap(), how.to_string())
}

/// `linux.resources.memory.limit` bounds the guest's linear memory inside wasmtime: `memory.grow`
/// returns -1 below the limit and the guest goes on (it is not OOM-killed). Without a limit the same
/// guest grows to its own cap.
#[test]
fn memory_limit_makes_memory_grow_fail() {
    let limit: u64 = 96 << 20;
    let mut b = bundle("memlimit", &["/tool.wasm", "grow", "echo", "still-alive"]);
    b.config["linux"]["resources"]["memory"] = json!({ "limit": limit });
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let (pages, how) = grew(&text);
    assert_eq!(how, "fail", "{text:?}");
    // 2 initial pages plus what was grown stays within the limit; at least some growth worked.
    assert!((pages + 2) * 65536 <= limit, "{pages} pages over {limit}");
    assert!(pages >= 16, "{text:?}");
    assert!(text.ends_with("still-alive\n"), "{text:?}");

    let b = bundle("nomemlimit", &["/tool.wasm", "grow"]);
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(grew(&stdout(&out)), (4096, "cap".to_string()));
}

/// A container with `RLIMIT_AS` of 1 GiB starts its guest, which can grow its memory.
#[test]
fn low_rlimit_as_still_starts() {
    let mut b = bundle("rlimitas", &["/tool.wasm", "echo", "started", "grow"]);
    b.config["process"]["rlimits"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "RLIMIT_AS", "hard": 1u64 << 30, "soft": 1u64 << 30}));
    b.config["linux"]["resources"]["memory"] = json!({ "limit": 64u64 << 20 });
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("started\n"), "{text:?}");
    let (pages, how) = grew(&text);
    assert_eq!(how, "fail", "{text:?}");
    assert!(pages >= 16, "{text:?}");
}

// ---------------------------------------------------------------------------------------------
// The AOT cache.

/// The first create compiles and stores the module; the second is a cache hit. A corrupted entry is
/// recompiled (never loaded), and so is an entry whose digest was rewritten to match garbage.
#[test]
fn aot_cache_hit_and_corrupt_entries() {
    let b = bundle("cache", &["/tool.wasm", "echo", "cached"]);
    let log = b.dir.join("amphi.log");
    let cache = cache_dir(&b);
    assert!(!cache.exists());

    let (out, l1) = run_logged(&b, &log);
    assert_eq!(stdout(&out), "cached\n", "stderr: {}", stderr(&out));
    let key = cache_key(&l1, "miss").unwrap_or_else(|| panic!("no cache miss logged: {l1}"));
    assert!(cache_key(&l1, "hit").is_none(), "{l1}");
    let artefact = cache.join(format!("{key}.cwasm"));
    assert!(artefact.is_file(), "no {artefact:?}");
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "cache dir mode");

    let (out, l2) = run_logged(&b, &log);
    assert_eq!(stdout(&out), "cached\n", "stderr: {}", stderr(&out));
    assert_eq!(cache_key(&l2, "hit").as_deref(), Some(key.as_str()), "{l2}");
    assert!(!l2.contains("wasm cache: miss"), "compiled again: {l2}");

    // Corrupt one byte in the middle of the artefact.
    let mut data = std::fs::read(&artefact).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&artefact, &data).unwrap();
    let (out, l3) = run_logged(&b, &log);
    assert_eq!(stdout(&out), "cached\n", "stderr: {}", stderr(&out));
    assert!(
        cache_key(&l3, "hit").is_none(),
        "corrupt entry loaded: {l3}"
    );
    assert_eq!(
        cache_key(&l3, "miss").as_deref(),
        Some(key.as_str()),
        "{l3}"
    );
    assert_ne!(
        std::fs::read(&artefact).unwrap(),
        data,
        "entry not rewritten"
    );

    // Garbage with a matching digest: wasmtime must reject it, and amphi recompile.
    let garbage = b"\x7fELF\x02\x01\x01 this is not a wasmtime artefact".repeat(64);
    std::fs::write(&artefact, &garbage).unwrap();
    std::fs::write(cache.join(format!("{key}.sha256")), sha256_file(&artefact)).unwrap();
    let (out, l4) = run_logged(&b, &log);
    assert_eq!(stdout(&out), "cached\n", "stderr: {}", stderr(&out));
    assert!(cache_key(&l4, "hit").is_none(), "garbage loaded: {l4}");
    assert_eq!(
        cache_key(&l4, "miss").as_deref(),
        Some(key.as_str()),
        "{l4}"
    );

    let (out, l5) = run_logged(&b, &log);
    assert_eq!(stdout(&out), "cached\n", "stderr: {}", stderr(&out));
    assert_eq!(cache_key(&l5, "hit").as_deref(), Some(key.as_str()), "{l5}");
}

/// Precompiled native code found in the image (a wasmtime artefact as args[0]) is never loaded.
#[test]
fn precompiled_artefact_in_the_image_is_refused() {
    let b = bundle("precomp-src", &["/tool.wasm", "echo", "x"]);
    let out = run(&b);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let artefact = std::fs::read_dir(cache_dir(&b))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a .cwasm in the cache");
    let mut b2 = bundle("precomp", &["/app/pre.cwasm", "echo", "x"]);
    std::fs::copy(&artefact, b2.rootfs().join("app/pre.cwasm")).unwrap();
    set_annotations(&mut b2, &[("run.oci.handler", "wasm")]);
    let out = create(&b2);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("process.args[0]") && err.contains("/app/pre.cwasm"),
        "{err}"
    );
    assert_no_leftovers(&b2);
}

// ---------------------------------------------------------------------------------------------
// Components.

/// A WASI preview 2 command component runs: it prints, reads a file of the rootfs, exits 0, and is
/// cached like a module.
#[test]
fn component_runs() {
    let component = tool_component();
    assert_eq!(&component[..4], b"\0asm");
    assert_eq!(
        &component[4..8],
        &[0x0d, 0x00, 0x01, 0x00],
        "not a component"
    );
    let b = bundle(
        "component",
        &[
            "/app/comp.wasm",
            "echo",
            "from-a-component",
            "cat",
            "/data/in.txt",
        ],
    );
    std::fs::write(b.rootfs().join("app/comp.wasm"), &component).unwrap();
    let log = b.dir.join("amphi.log");
    let (out, l1) = run_logged(&b, &log);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), format!("from-a-component\nok:{DATA}\n"));
    assert!(cache_key(&l1, "miss").is_some(), "{l1}");
    let (out, l2) = run_logged(&b, &log);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), format!("from-a-component\nok:{DATA}\n"));
    assert!(cache_key(&l2, "hit").is_some(), "{l2}");
}

// ---------------------------------------------------------------------------------------------
// Bad input: refused at create, naming process.args[0], leaving nothing.

/// `create` of `b` fails with one line naming `names`, nothing is left, and no cache entry was
/// written.
#[track_caller]
fn assert_refused_at_create(b: &Bundle, names: &[&str]) {
    let out = create(b);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "create accepted it: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err:?}");
    for n in names {
        assert!(err.contains(n), "error does not name {n:?}: {err}");
    }
    assert_no_leftovers(b);
}

#[test]
fn truncated_module_is_refused_at_create() {
    let b = bundle("truncated", &["/app/trunc.wasm"]);
    let bin = tool_wasm();
    std::fs::write(b.rootfs().join("app/trunc.wasm"), &bin[..bin.len() / 2]).unwrap();
    assert_refused_at_create(&b, &["process.args[0]", "/app/trunc.wasm"]);
    let entries = std::fs::read_dir(cache_dir(&b))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(entries, 0, "a cache entry was written for a broken module");
}

#[test]
fn module_without_start_is_refused_at_create() {
    let b = bundle("nostart", &["/app/nostart.wat"]);
    std::fs::write(
        b.rootfs().join("app/nostart.wat"),
        "(module (memory (export \"memory\") 1) (func (export \"main\")))",
    )
    .unwrap();
    assert_refused_at_create(&b, &["process.args[0]", "/app/nostart.wat", "_start"]);
}

#[test]
fn module_with_unknown_imports_is_refused_at_create() {
    let b = bundle("badimport", &["/app/badimport.wat"]);
    std::fs::write(
        b.rootfs().join("app/badimport.wat"),
        "(module (import \"env\" \"host_secret\" (func)) (memory (export \"memory\") 1) \
         (func (export \"_start\")))",
    )
    .unwrap();
    assert_refused_at_create(
        &b,
        &["process.args[0]", "/app/badimport.wat", "host_secret"],
    );
}

#[test]
fn missing_module_is_refused_at_create() {
    let mut b = bundle("missing", &["/app/missing.wasm"]);
    set_annotations(&mut b, &[("run.oci.handler", "wasm")]);
    assert_refused_at_create(&b, &["process.args[0]", "/app/missing.wasm"]);
}
