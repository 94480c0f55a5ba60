//! The decisions amphi makes itself on a cgroup v2 hierarchy (pure v2, or the cgroup2 mount of a
//! hybrid host), as functions of a directory so that they can be tested on a fixture tree laid out
//! like `/sys/fs/cgroup` (Documentation/admin-guide/cgroup-v2.rst): creating the container's
//! directory and enabling controllers in the parents amphi creates, `linux.resources.unified`,
//! `hugepageLimits`, freezing through `cgroup.freeze`, killing through `cgroup.kill` or
//! `cgroup.procs`, and OOM kills from `memory.events`. Resource conversions (cpu shares to
//! `cpu.weight`, swap to `memory.swap.max`, blkio to `io.*`) stay in cgroups-rs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn tokens(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .split_whitespace()
        .map(|t| t.trim_start_matches('+').to_string())
        .collect()
}

/// Controllers listed in `<dir>/cgroup.controllers` (available to `dir`).
pub fn controllers(dir: &Path) -> Vec<String> {
    tokens(&dir.join("cgroup.controllers"))
}

/// Creates `root/rel` top-down and returns the directories it created (top first). In every
/// created directory except the last (the container's, which holds processes: "no internal
/// processes" rule), the controllers its parent passes down (`cgroup.subtree_control` of the
/// parent) are enabled in `cgroup.subtree_control`, so that the container's directory gets every
/// controller that reaches the first created directory. Directories that existed before are never
/// written to.
///
/// Errors: a directory cannot be created; a controller that cannot be enabled is skipped (the
/// resource write that needs it then names the missing file).
pub fn create_dir(root: &Path, rel: &str) -> anyhow::Result<Vec<PathBuf>> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let mut created = Vec::new();
    // A parent that vanishes between two mkdirs (another cleanup removed it while it was empty for
    // a moment) makes the walk start again from the root, a few times.
    let mut attempts = super::CREATE_ATTEMPTS;
    'walk: loop {
        let mut dir = root.to_path_buf();
        for (i, part) in parts.iter().enumerate() {
            let parent = dir.clone();
            dir.push(part);
            match std::fs::create_dir(&dir) {
                Ok(()) => created.push(dir.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts > 1 => {
                    attempts -= 1;
                    continue 'walk;
                }
                Err(e) => anyhow::bail!("cgroup {}: create: {e}", dir.display()),
            }
            if i + 1 < parts.len() {
                let wanted = tokens(&parent.join("cgroup.subtree_control"));
                enable(&dir, &wanted);
            }
        }
        return Ok(created);
    }
}

/// Writes `+c` for each controller to `<dir>/cgroup.subtree_control`: all at once, else one by one
/// skipping the ones the kernel refuses.
fn enable(dir: &Path, wanted: &[String]) {
    if wanted.is_empty() {
        return;
    }
    let file = dir.join("cgroup.subtree_control");
    let line: Vec<String> = wanted.iter().map(|c| format!("+{c}")).collect();
    if std::fs::write(&file, line.join(" ")).is_ok() {
        return;
    }
    for c in wanted {
        if let Err(e) = std::fs::write(&file, format!("+{c}")) {
            log::debug!("enable {c} in {}: {e}", file.display());
        }
    }
}

/// `linux.resources.unified`: writes each `<controller>.<file>` value into `dir`, keys in sorted
/// order. The controller of a key must be listed in `cgroup.controllers` of `dir`, except the core
/// files `cgroup.*` and the pressure files (`*.pressure`, which exist without their controller).
///
/// Errors (naming the key): not a plain `<controller>.<file>` name (no `/`, no `..`), a controller
/// not available in `dir`, a file the kernel does not have, a value the kernel refuses.
pub fn write_unified(dir: &Path, unified: &HashMap<String, String>) -> anyhow::Result<()> {
    let mut keys: Vec<&String> = unified.keys().collect();
    keys.sort();
    let available = controllers(dir);
    // All keys are checked before any is written.
    for key in &keys {
        let valid = key.split_once('.').is_some_and(|(c, f)| {
            !c.is_empty()
                && !f.is_empty()
                && !f.starts_with('.')
                && !key.contains("..")
                && key
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '.' || ch == '_' || ch == '-')
        });
        if !valid {
            anyhow::bail!(
                "linux.resources.unified.{key}: not a cgroup v2 file name (<controller>.<file>)"
            );
        }
        let controller = key.split('.').next().unwrap_or_default();
        let core = controller == "cgroup" || key.ends_with(".pressure");
        if !core && !available.iter().any(|c| c == controller) {
            anyhow::bail!(
                "linux.resources.unified.{key}: controller {controller:?} is not available in {} (cgroup.controllers: {:?})",
                dir.display(),
                available.join(" ")
            );
        }
        if !dir.join(key).exists() {
            anyhow::bail!(
                "linux.resources.unified.{key}: no such file in {}",
                dir.display()
            );
        }
    }
    for key in keys {
        std::fs::write(dir.join(key), &unified[key]).map_err(|e| {
            anyhow::anyhow!(
                "linux.resources.unified.{key}: write {:?}: {e}",
                unified[key]
            )
        })?;
    }
    Ok(())
}

/// `linux.resources.hugepageLimits` on cgroup v2: `limit` bytes to `hugetlb.<pageSize>.max` (and
/// to `hugetlb.<pageSize>.rsvd.max` where the kernel has it, as runc does). `pageSize` is the
/// kernel's spelling (`2MB`, `1GB`, `64KB`; see the files under `dir`, or the sizes in
/// /sys/kernel/mm/hugepages).
///
/// Errors (naming the entry): a page size not of the form `<n>KB|MB|GB`; hugetlb not available in
/// `dir` (not enabled in the parent's `cgroup.subtree_control`); a page size the kernel does not
/// have; a value the kernel refuses.
pub fn write_hugetlb(dir: &Path, limits: &[(String, i64)]) -> anyhow::Result<()> {
    for (i, (size, _)) in limits.iter().enumerate() {
        let ok = size.len() > 2
            && ["KB", "MB", "GB"].iter().any(|u| {
                size.strip_suffix(u)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            });
        if !ok {
            anyhow::bail!(
                "linux.resources.hugepageLimits[{i}].pageSize: {size:?} is not <number>KB|MB|GB"
            );
        }
    }
    if limits.is_empty() {
        return Ok(());
    }
    if !controllers(dir).iter().any(|c| c == "hugetlb") {
        let parent = dir.parent().unwrap_or(dir);
        anyhow::bail!(
            "linux.resources.hugepageLimits: the hugetlb controller is not available in {} (it must be enabled in {}; amphi enables controllers only in cgroups it creates)",
            dir.display(),
            parent.join("cgroup.subtree_control").display()
        );
    }
    for (i, (size, limit)) in limits.iter().enumerate() {
        let max = dir.join(format!("hugetlb.{size}.max"));
        if !max.exists() {
            anyhow::bail!(
                "linux.resources.hugepageLimits[{i}].pageSize: {size:?}: this kernel has no {}",
                max.display()
            );
        }
        let value = if *limit < 0 {
            "max".to_string()
        } else {
            limit.to_string()
        };
        std::fs::write(&max, &value).map_err(|e| {
            anyhow::anyhow!(
                "linux.resources.hugepageLimits[{i}]: write {value} to {}: {e}",
                max.display()
            )
        })?;
        let rsvd = dir.join(format!("hugetlb.{size}.rsvd.max"));
        if rsvd.exists() {
            std::fs::write(&rsvd, &value).map_err(|e| {
                anyhow::anyhow!(
                    "linux.resources.hugepageLimits[{i}]: write {value} to {}: {e}",
                    rsvd.display()
                )
            })?;
        }
    }
    Ok(())
}

/// Freezes (`true`) or thaws the cgroup at `dir` through `cgroup.freeze`, then waits up to
/// `timeout` for `cgroup.events` to report `frozen 1` (or `frozen 0`).
///
/// Errors: `cgroup.freeze` cannot be written (a kernel before 5.2 has none), or the state is not
/// reached in time.
pub fn freeze(dir: &Path, frozen: bool, timeout: Duration) -> anyhow::Result<()> {
    let file = dir.join("cgroup.freeze");
    std::fs::write(&file, if frozen { "1" } else { "0" })
        .map_err(|e| anyhow::anyhow!("cgroup {}: write cgroup.freeze: {e}", dir.display()))?;
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let deadline = Instant::now() + timeout;
    loop {
        let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap_or_default();
        if events.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "cgroup {}: cgroup.events did not report {want:?}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Host pids in `<dir>/cgroup.procs` (empty when unreadable).
pub fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Sends `signal` to every process of the cgroup at `dir`: SIGKILL through `cgroup.kill` (kernel
/// 5.14+, which also catches processes forked meanwhile), otherwise one kill(2) per pid of
/// `cgroup.procs`. Returns how it was done (`"cgroup.kill"` or `"cgroup.procs"`).
pub fn kill_all(dir: &Path, signal: i32) -> &'static str {
    if signal == libc::SIGKILL {
        let file = dir.join("cgroup.kill");
        if file.exists() && std::fs::write(&file, "1").is_ok() {
            return "cgroup.kill";
        }
    }
    for pid in procs(dir) {
        // SAFETY: kill(2) takes a pid and a signal number; errors (a process gone) are ignored.
        unsafe { libc::kill(pid, signal) };
    }
    "cgroup.procs"
}

/// The `oom_kill` count of `<dir>/memory.events` (processes the kernel OOM-killed in this cgroup);
/// 0 when the file or the line is missing.
pub fn oom_kills(dir: &Path) -> u64 {
    oom_kill_line(&dir.join("memory.events"))
}

/// The number on the `oom_kill N` line of `file` (v2 `memory.events`, v1 `memory.oom_control`); 0 when
/// the file or the line is missing.
pub fn oom_kill_line(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixture laid out like `/sys/fs/cgroup` of a pure-v2 host with systemd-style root controls.
    fn fixture() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::write(
            r.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        )
        .unwrap();
        std::fs::write(
            r.join("cgroup.subtree_control"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        t
    }

    /// What the kernel does on mkdir in cgroupfs: the new directory's files appear.
    fn populate(dir: &Path, ctrls: &str) {
        std::fs::write(dir.join("cgroup.controllers"), ctrls).unwrap();
        for f in [
            "cgroup.procs",
            "cgroup.freeze",
            "cgroup.kill",
            "cgroup.subtree_control",
        ] {
            std::fs::write(dir.join(f), "").unwrap();
        }
    }

    #[test]
    fn create_enables_in_created_parents_only() {
        let t = fixture();
        let r = t.path();
        std::fs::create_dir(r.join("existing")).unwrap();
        std::fs::write(r.join("existing/cgroup.subtree_control"), "memory pids\n").unwrap();
        let created = create_dir(r, "/existing/amphi/c1").unwrap();
        assert_eq!(
            created,
            vec![r.join("existing/amphi"), r.join("existing/amphi/c1")]
        );
        // The created parent passes on what its (pre-existing) parent passes down.
        assert_eq!(
            std::fs::read_to_string(r.join("existing/amphi/cgroup.subtree_control")).unwrap(),
            "+memory +pids"
        );
        // The pre-existing parent and the root were not written; the leaf gets no subtree control.
        assert_eq!(
            std::fs::read_to_string(r.join("existing/cgroup.subtree_control")).unwrap(),
            "memory pids\n"
        );
        assert_eq!(
            std::fs::read_to_string(r.join("cgroup.subtree_control")).unwrap(),
            "cpuset cpu io memory pids\n"
        );
        assert!(!r.join("existing/amphi/c1/cgroup.subtree_control").exists());
        // Again: nothing new is created or written.
        assert!(create_dir(r, "existing/amphi/c1").unwrap().is_empty());
    }

    #[test]
    fn unified_keys() {
        let t = fixture();
        let d = t.path().join("c1");
        std::fs::create_dir(&d).unwrap();
        populate(&d, "cpu memory pids\n");
        std::fs::write(d.join("memory.high"), "max\n").unwrap();
        std::fs::write(d.join("cpu.pressure"), "").unwrap();
        std::fs::write(d.join("io.max"), "").unwrap();
        let map = |kv: &[(&str, &str)]| -> HashMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        write_unified(
            &d,
            &map(&[("memory.high", "1048576"), ("cgroup.freeze", "0")]),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("memory.high")).unwrap(),
            "1048576"
        );
        let err = |kv: &[(&str, &str)]| write_unified(&d, &map(kv)).unwrap_err().to_string();
        let e = err(&[("io.max", "8:0 rbps=1")]);
        assert!(
            e.contains("unified.io.max") && e.contains("not available"),
            "{e}"
        );
        let e = err(&[("memory.nosuch", "1")]);
        assert!(e.contains("no such file"), "{e}");
        for bad in [
            "memory",
            "../memory.high",
            "memory./x",
            "memory..high",
            ".high",
        ] {
            let e = err(&[(bad, "1")]);
            assert!(e.contains("not a cgroup v2 file name"), "{bad}: {e}");
        }
        // A bad key anywhere means nothing is written.
        let e = err(&[("memory.high", "5"), ("zzz.x", "1")]);
        assert!(e.contains("zzz"), "{e}");
        assert_eq!(
            std::fs::read_to_string(d.join("memory.high")).unwrap(),
            "1048576"
        );
    }

    #[test]
    fn hugetlb_files() {
        let t = fixture();
        let d = t.path().join("c1");
        std::fs::create_dir(&d).unwrap();
        populate(&d, "memory\n");
        let l = |s: &str, n: i64| vec![(s.to_string(), n)];
        let e = write_hugetlb(&d, &l("2MB", 4 << 20))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hugetlb controller is not available") && e.contains("subtree_control"),
            "{e}"
        );
        populate(&d, "memory hugetlb\n");
        std::fs::write(d.join("hugetlb.2MB.max"), "max\n").unwrap();
        std::fs::write(d.join("hugetlb.2MB.rsvd.max"), "max\n").unwrap();
        write_hugetlb(&d, &l("2MB", 4 << 20)).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("hugetlb.2MB.max")).unwrap(),
            "4194304"
        );
        assert_eq!(
            std::fs::read_to_string(d.join("hugetlb.2MB.rsvd.max")).unwrap(),
            "4194304"
        );
        write_hugetlb(&d, &l("2MB", -1)).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("hugetlb.2MB.max")).unwrap(),
            "max"
        );
        let e = write_hugetlb(&d, &l("1GB", 1)).unwrap_err().to_string();
        assert!(
            e.contains("hugepageLimits[0].pageSize") && e.contains("hugetlb.1GB.max"),
            "{e}"
        );
        for bad in ["2M", "MB", "2mb", "../2MB"] {
            let e = write_hugetlb(&d, &l(bad, 1)).unwrap_err().to_string();
            assert!(e.contains("is not <number>KB|MB|GB"), "{bad}: {e}");
        }
    }

    #[test]
    fn freeze_and_events() {
        let t = fixture();
        let d = t.path().join("c1");
        std::fs::create_dir(&d).unwrap();
        populate(&d, "memory\n");
        std::fs::write(d.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        freeze(&d, true, Duration::from_millis(50)).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("cgroup.freeze")).unwrap(),
            "1"
        );
        let e = freeze(&d, false, Duration::from_millis(20))
            .unwrap_err()
            .to_string();
        assert!(e.contains("frozen 0"), "{e}");
        assert_eq!(
            std::fs::read_to_string(d.join("cgroup.freeze")).unwrap(),
            "0"
        );
        assert!(freeze(&t.path().join("gone"), true, Duration::ZERO).is_err());

        assert_eq!(oom_kills(&d), 0);
        std::fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(oom_kills(&d), 2);
    }

    #[test]
    fn kill_through_cgroup_kill_or_procs() {
        let t = fixture();
        let d = t.path().join("c1");
        std::fs::create_dir(&d).unwrap();
        populate(&d, "pids\n");
        assert_eq!(kill_all(&d, libc::SIGKILL), "cgroup.kill");
        assert_eq!(std::fs::read_to_string(d.join("cgroup.kill")).unwrap(), "1");
        // Another signal: each pid of cgroup.procs (a child of this test).
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(d.join("cgroup.procs"), format!("{}\n", child.id())).unwrap();
        assert_eq!(procs(&d), vec![child.id() as i32]);
        assert_eq!(kill_all(&d, libc::SIGTERM), "cgroup.procs");
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        // No cgroup.kill (kernel < 5.14): SIGKILL goes through cgroup.procs.
        std::fs::remove_file(d.join("cgroup.kill")).unwrap();
        std::fs::write(d.join("cgroup.procs"), "").unwrap();
        assert_eq!(kill_all(&d, libc::SIGKILL), "cgroup.procs");
    }
}
