//! Escape classes 3, 4 and 5 of issue 6: hostile rootfs paths cannot redirect a mount, a created
//! file or directory, a device node, or a mask to the host.
//!
//! Each test builds a rootfs crafted to attack (symlinks to a host canary directory next to the
//! bundle, absolute and relative, in the last or an intermediate component, `..` chains, a
//! symlinked `/proc`, a `/dev/null` that is not the null device) and checks from the outside that
//! the canary is byte-for-byte untouched and no host mount appeared on it, and from the inside that
//! the container got its mounts within its own rootfs, or that create failed naming the field.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_no_leftovers, stderr, stdout, Bundle};
use serde_json::{json, Value};

/// A host directory outside the rootfs (next to the bundle) holding one file and one subdirectory:
/// what a hostile rootfs aims its symlinks at.
struct Canary {
    dir: PathBuf,
    before: BTreeMap<PathBuf, (u32, u64, Vec<u8>)>,
}

impl Canary {
    fn new(b: &Bundle, name: &str) -> Canary {
        let dir = b.dir.parent().unwrap().join(name);
        std::fs::create_dir_all(dir.join("subdir")).unwrap();
        std::fs::write(dir.join("host-file"), "host secret\n").unwrap();
        std::fs::write(dir.join("subdir/inner"), "inner\n").unwrap();
        let before = snapshot(&dir);
        Canary { dir, before }
    }

    /// Path of the canary file.
    fn file(&self) -> PathBuf {
        self.dir.join("host-file")
    }

    /// Asserts the canary's tree (names, modes, inode change times, contents) is as it was and the
    /// host has no mount on or under it.
    fn assert_untouched(&self) {
        assert_eq!(snapshot(&self.dir), self.before, "the host canary changed");
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let canary = self.dir.to_str().unwrap();
        let on_it: Vec<&str> = info
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .nth(4)
                    .is_some_and(|p| p.starts_with(canary))
            })
            .collect();
        assert!(
            on_it.is_empty(),
            "a host mount appeared on the canary: {on_it:?}"
        );
    }
}

/// (mode, ctime in ns, content) of every entry under `dir`, by relative path; the directory itself
/// included, so a new entry, a chmod or a write anywhere shows.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ctime = m.ctime() as u64 * 1_000_000_000 + m.ctime_nsec() as u64;
        let content = if m.is_file() {
            std::fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        out.insert(
            p.strip_prefix(dir).unwrap().to_path_buf(),
            (m.mode(), ctime, content),
        );
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
    }
    out
}

/// The canary's path as seen from inside the rootfs (the same absolute path, resolved there).
fn inside(rootfs: &Path, host: &Path) -> PathBuf {
    rootfs.join(host.strip_prefix("/").unwrap())
}

fn add_mount(b: &mut Bundle, m: Value) {
    b.config["mounts"].as_array_mut().unwrap().push(m);
}

fn run_ok(b: &Bundle) -> String {
    let out = b.run();
    assert!(
        out.status.success(),
        "run failed ({:?}): stdout: {} stderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Asserts a failed create: status 1, no panic, one error line naming each of `names`, nothing
/// left behind.
fn assert_refused(b: &Bundle, out: &Output, names: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "create must fail: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in names {
        assert!(err.contains(n), "error does not name {n:?}: {err}");
    }
    assert!(b.state().is_none(), "a state exists after a failed create");
    assert_no_leftovers(b);
}

/// The mount points (field 5 of mountinfo) the container printed.
fn mount_points(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Class 3: mount destinations, created targets, device nodes, /dev symlinks, cwd
// ---------------------------------------------------------------------------------------------

/// Symlinks to a host directory in every position a config path can take them through — the last
/// component (absolute and relative with a `..` chain), an intermediate component, a dangling
/// symlink whose target does not exist yet, a destination with its own `..` chain, `/dev` itself,
/// and `process.cwd` — are all resolved inside the rootfs (as runc does): the container sees each
/// mount at the symlink's target inside its own root, and the host canary is untouched.
#[test]
fn symlinks_in_mount_paths_resolve_inside_the_rootfs() {
    let mut b = Bundle::new(
        "esc-sym",
        &[
            "sh",
            "-c",
            "cat /proc/self/mountinfo; echo ---; pwd; cat /abs/file-target; \
             ls /dev/null /dev/fd /dev/ptmx /dev/evil-node; stat -c '%t:%T' /dev/evil-node",
        ],
    );
    let canary = Canary::new(&b, "canary-sym");
    let c = canary.dir.clone();
    let r = b.rootfs();
    let depth = r.components().count();
    let dotdots = "../".repeat(depth + 3);
    symlink(&c, r.join("abs")).unwrap();
    symlink(format!("{dotdots}{}", c.display()), r.join("rel")).unwrap();
    symlink(&c, r.join("mid")).unwrap();
    symlink(c.join("not-yet/deeper"), r.join("dangling")).unwrap();
    // /dev as a whole: its tmpfs, every device node, /dev/pts, /dev/shm and the /dev symlinks.
    std::fs::remove_dir(r.join("dev")).unwrap();
    symlink(c.join("devdir"), r.join("dev")).unwrap();
    std::fs::write(b.dir.join("payload"), "payload\n").unwrap();
    add_mount(
        &mut b,
        json!({"destination": "/abs/file-target", "type": "bind", "source": "payload", "options": ["bind"]}),
    );
    add_mount(
        &mut b,
        json!({"destination": "/rel/subdir", "type": "tmpfs", "source": "t-rel"}),
    );
    add_mount(
        &mut b,
        json!({"destination": "/mid/m/x/y", "type": "tmpfs", "source": "t-mid"}),
    );
    add_mount(
        &mut b,
        json!({"destination": "/dangling", "type": "tmpfs", "source": "t-dangling"}),
    );
    add_mount(
        &mut b,
        json!({"destination": format!("/../../../..{}/dotdot", c.display()), "type": "tmpfs", "source": "t-dotdot"}),
    );
    b.config["linux"]["devices"] =
        json!([{"path": "/dev/evil-node", "type": "c", "major": 1, "minor": 5}]);
    b.config["process"]["cwd"] = json!("/mid/cwd-dir");
    let text = run_ok(&b);
    canary.assert_untouched();

    let (info, rest) = text.split_once("---\n").unwrap();
    let points = mount_points(info);
    let cs = c.display().to_string();
    // Every mount went to the canary's path *inside* the container (where /abs etc. point).
    for want in [
        "file-target",
        "subdir",
        "m/x/y",
        "not-yet/deeper",
        "dotdot",
        "devdir",
        "devdir/pts",
    ] {
        let want = format!("{cs}/{want}");
        assert!(
            points.contains(&want),
            "no mount at {want} inside: {points:?}"
        );
    }
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(lines[0], format!("{cs}/cwd-dir"), "{rest}");
    assert_eq!(lines[1], "payload", "{rest}");
    assert!(lines.contains(&"/dev/evil-node"), "{rest}");
    assert_eq!(lines.last(), Some(&"1:5"), "{rest}");
    // On the host, what was created lies inside the rootfs.
    let ci = inside(&r, &c);
    assert!(ci.join("cwd-dir").is_dir());
    assert!(ci.join("file-target").is_file());
    assert!(ci.join("not-yet/deeper").is_dir());
    assert!(ci.join("devdir").is_dir());
    assert!(!c.join("not-yet").exists() && !c.join("devdir").exists());
    assert_no_leftovers(&b);
}

/// A file bind-mount target, a device node and a `/dev` symlink whose *last* component is, in the
/// image, a symlink to a host file: the node replaces the symlink (unlinked first, created with
/// mknodat), and the bind target is resolved inside the rootfs; the host file keeps its content and
/// is never mounted over.
#[test]
fn symlinks_to_host_files_are_never_written_or_mounted_over() {
    let mut b = Bundle::new(
        "esc-file",
        &[
            "sh",
            "-c",
            "stat -c '%F %t:%T' /dev/zero; readlink /dev/stdout; cat /etc/hostname-bind",
        ],
    );
    let canary = Canary::new(&b, "canary-file");
    let r = b.rootfs();
    // The default /dev tmpfs would hide these: let the image's /dev be used as it is.
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/dev");
    std::fs::create_dir_all(r.join("dev/pts")).unwrap();
    std::fs::create_dir_all(r.join("dev/shm")).unwrap();
    std::fs::create_dir_all(r.join("dev/mqueue")).unwrap();
    symlink(canary.file(), r.join("dev/zero")).unwrap();
    symlink(canary.file(), r.join("dev/stdout")).unwrap();
    symlink(canary.file(), r.join("etc/hostname-bind")).unwrap();
    std::fs::write(b.dir.join("hn"), "bound\n").unwrap();
    add_mount(
        &mut b,
        json!({"destination": "/etc/hostname-bind", "type": "bind", "source": "hn", "options": ["bind", "ro"]}),
    );
    let text = run_ok(&b);
    canary.assert_untouched();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "character special file 1:5", "{text}");
    // An existing entry of the image at /dev/stdout is left as it is (runc does the same), but
    // resolved in the container it cannot reach the host.
    assert_eq!(lines[1], canary.file().display().to_string(), "{text}");
    assert_eq!(lines[2], "bound", "{text}");
    assert!(
        inside(&r, &canary.file()).exists(),
        "bind target not created inside the rootfs"
    );
    assert_no_leftovers(&b);
}

/// A thread swaps a rootfs directory and a symlink to the host canary (renameat2
/// RENAME_EXCHANGE, so one of the two is always there) as fast as it can while create after create
/// mounts, binds and creates device nodes and the cwd under it. Whatever the interleaving, nothing
/// may land on the host; create may succeed or fail (a component can vanish mid-walk), but the
/// canary must stay untouched. With path strings (the former secure_join + mount(2) by name) this
/// redirected mounts to the host within a few attempts (see the report of issue 6).
#[test]
fn symlink_exchange_race_during_create_never_reaches_the_host() {
    let mut b = Bundle::new("esc-race", &["true"]);
    let canary = Canary::new(&b, "canary-race");
    let r = b.rootfs();
    std::fs::create_dir_all(r.join("swap/sub")).unwrap();
    symlink(&canary.dir, r.join("swap-link")).unwrap();
    std::fs::write(b.dir.join("payload"), "payload\n").unwrap();
    add_mount(
        &mut b,
        json!({"destination": "/swap/sub/t", "type": "tmpfs", "source": "race"}),
    );
    add_mount(
        &mut b,
        json!({"destination": "/swap/subdir/f", "type": "bind", "source": "payload", "options": ["bind"]}),
    );
    b.config["linux"]["devices"] =
        json!([{"path": "/swap/subdir/node", "type": "c", "major": 1, "minor": 3}]);
    b.config["process"]["cwd"] = json!("/swap/subdir/cwd");
    b.write_config();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let a = std::ffi::CString::new(r.join("swap").to_str().unwrap()).unwrap();
        let l = std::ffi::CString::new(r.join("swap-link").to_str().unwrap()).unwrap();
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: both are valid C strings; renameat2 only reads them.
                let rc = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        l.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
                swaps += 1;
            }
            swaps
        })
    };
    let mut ok = 0;
    for _ in 0..30 {
        let out = b.create();
        if out.status.success() {
            ok += 1;
            let d = b.amphi(&["delete", "--force", &b.id]);
            assert!(d.status.success(), "delete: {}", stderr(&d));
        } else {
            let err = stderr(&out);
            assert!(!err.contains("panicked"), "{err}");
            assert!(b.state().is_none());
        }
        canary.assert_untouched();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 30, "the swapper barely ran ({swaps} swaps)");
    eprintln!("race: {ok}/30 creates succeeded while {swaps} swaps ran");
    canary.assert_untouched();
    assert_no_leftovers(&b);
}

// ---------------------------------------------------------------------------------------------
// Class 4: /proc and /sys must be real directories that become procfs and sysfs
// ---------------------------------------------------------------------------------------------

/// `/proc` (or `/sys`) that is a symlink — to a host directory, or even to a directory of the
/// rootfs — or that passes through a symlinked component, is refused (as runc 1.1.12+ refuses it),
/// naming the mount; nothing is mounted on the host canary.
#[test]
fn proc_and_sys_on_a_symlink_are_refused() {
    for (case, dest) in [
        ("proc-abs", "/proc"),
        ("proc-rel", "/proc"),
        ("sys-abs", "/sys"),
        ("proc-mid", "/proc"),
    ] {
        let mut b = Bundle::new(&format!("esc-{case}"), &["true"]);
        let canary = Canary::new(&b, &format!("canary-{case}"));
        let r = b.rootfs();
        let name = dest.trim_start_matches('/');
        let index = b.config["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .position(|m| m["destination"] == dest)
            .unwrap();
        std::fs::remove_dir(r.join(name)).unwrap();
        match case {
            "proc-rel" => symlink("tmp", r.join(name)).unwrap(),
            "proc-mid" => {
                // proc mounted at /pp/proc where /pp is a symlink to the host.
                std::fs::create_dir(r.join(name)).unwrap();
                symlink(&canary.dir, r.join("pp")).unwrap();
                b.config["mounts"][index]["destination"] = json!("/pp/subdir");
            }
            _ => symlink(&canary.dir, r.join(name)).unwrap(),
        }
        b.write_config();
        let out = b.create();
        assert_refused(
            &b,
            &out,
            &[&format!("mounts[{index}].destination"), "symlink"],
        );
        canary.assert_untouched();
    }
}

/// A real `/proc` and `/sys` become procfs and sysfs (checked by the runtime with fstatfs before
/// attaching; here from inside with `stat -f`).
#[test]
fn proc_and_sys_are_procfs_and_sysfs() {
    let b = Bundle::new("esc-procfs", &["sh", "-c", "stat -f -c %t /proc /sys"]);
    let text = run_ok(&b);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["9fa0", "62656572"],
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Class 5: maskedPaths bind the real /dev/null
// ---------------------------------------------------------------------------------------------

/// Masked files are the null character device 1:3 and masked directories an empty read-only
/// tmpfs, even when the image's `/dev/null` was a symlink to a host file (it is replaced by a real
/// node before the masks are made).
#[test]
fn masks_use_the_null_device_even_when_the_image_had_a_symlink() {
    let mut b = Bundle::new(
        "esc-mask",
        &[
            "sh",
            "-c",
            "stat -c '%F %t:%T' /masked-file /proc/timer_list; cat /masked-file | wc -c; \
             ls -A /masked-dir | wc -l; touch /masked-dir/x 2>/dev/null; echo touch=$?",
        ],
    );
    let canary = Canary::new(&b, "canary-mask");
    let r = b.rootfs();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/dev");
    std::fs::create_dir_all(r.join("dev/pts")).unwrap();
    std::fs::create_dir_all(r.join("dev/shm")).unwrap();
    std::fs::create_dir_all(r.join("dev/mqueue")).unwrap();
    symlink(canary.file(), r.join("dev/null")).unwrap();
    std::fs::write(r.join("masked-file"), "secret\n").unwrap();
    std::fs::create_dir(r.join("masked-dir")).unwrap();
    std::fs::write(r.join("masked-dir/content"), "secret\n").unwrap();
    b.config["root"]["readonly"] = json!(false);
    b.config["linux"]["maskedPaths"] = json!(["/masked-file", "/masked-dir", "/proc/timer_list"]);
    let text = run_ok(&b);
    canary.assert_untouched();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "character special file 1:3",
            "character special file 1:3",
            "0",
            "0",
            "touch=1"
        ],
        "{text}"
    );
    assert_no_leftovers(&b);
}

/// When the container's `/dev/null` is not the null device — `/dev` bound from a directory whose
/// `null` is a symlink to a host file, or a regular file, or `linux.devices` puts another device
/// there — a masked file is not bound to it: create fails naming `linux.maskedPaths` and
/// `/dev/null`, and the host canary is untouched.
#[test]
fn masks_refuse_a_dev_null_that_is_not_the_null_device() {
    for case in ["symlink", "regular", "other-device"] {
        let mut b = Bundle::new(&format!("esc-null-{case}"), &["true"]);
        let canary = Canary::new(&b, &format!("canary-null-{case}"));
        let r = b.rootfs();
        std::fs::write(r.join("masked-file"), "secret\n").unwrap();
        b.config["linux"]["maskedPaths"] = json!(["/masked-file"]);
        match case {
            "other-device" => {
                b.config["linux"]["devices"] =
                    json!([{"path": "/dev/null", "type": "c", "major": 1, "minor": 5}]);
            }
            _ => {
                let devdir = b.dir.join("devdir");
                std::fs::create_dir_all(&devdir).unwrap();
                if case == "symlink" {
                    symlink(canary.file(), devdir.join("null")).unwrap();
                    // The same path exists inside the rootfs, so the symlink does lead somewhere.
                    let target = inside(&r, &canary.file());
                    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                    std::fs::write(&target, "rootfs copy\n").unwrap();
                } else {
                    std::fs::write(devdir.join("null"), "not null\n").unwrap();
                }
                let mounts = b.config["mounts"].as_array_mut().unwrap();
                mounts.retain(|m| {
                    !m["destination"]
                        .as_str()
                        .is_some_and(|d| d == "/dev" || d.starts_with("/dev/"))
                });
                mounts.push(json!({"destination": "/dev", "type": "bind", "source": devdir.to_str().unwrap(), "options": ["rbind"]}));
            }
        }
        b.write_config();
        let out = b.create();
        assert_refused(&b, &out, &["linux.maskedPaths", "/dev/null"]);
        canary.assert_untouched();
    }
}
