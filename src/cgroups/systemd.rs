//! The systemd cgroup driver's path rules (`--systemd-cgroup`), as runc applies them
//! (runc libcontainer/cgroups/systemd: `ExpandSlice`, `getUnitName`; systemd.slice(5) for the slice
//! naming): `linux.cgroupsPath` is `slice:prefix:name`; an empty slice means `system.slice`; the
//! unit is `prefix-name.scope` (`name.scope` without a prefix, or `name` itself when it ends in
//! `.slice`); a slice `a-b.slice` lives at `a.slice/a-b.slice`.

use std::path::Path;

/// Where systemd says it runs (sd_booted(3)).
pub const SYSTEMD_RUNNING: &str = "/run/systemd/system";

/// A parsed systemd cgroups path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdPath {
    /// The parent slice, e.g. `system.slice`.
    pub slice: String,
    /// The transient unit, e.g. `amphi-c1.scope`.
    pub unit: String,
    /// The cgroupfs path of the unit from each hierarchy's root, e.g. `/system.slice/amphi-c1.scope`.
    pub path: String,
    /// The `slice:prefix:name` form that cgroups-rs' `SystemdManager::new` takes.
    pub spec: String,
}

/// Expands a slice name into its cgroupfs path: `-.slice` is the root (`/`), `a-b-c.slice` is
/// `/a.slice/a-b.slice/a-b-c.slice`.
///
/// Errors: no `.slice` suffix, a `/` in the name, a leading or trailing `-` or a `--` (runc's and
/// systemd's rules for slice names).
pub fn expand_slice(slice: &str) -> anyhow::Result<String> {
    let bad = |why: &str| anyhow::anyhow!("--systemd-cgroup: slice {slice:?}: {why}");
    let name = slice
        .strip_suffix(".slice")
        .ok_or_else(|| bad("must end in .slice"))?;
    if name.contains('/') {
        return Err(bad("must not contain '/'"));
    }
    if name == "-" {
        return Ok("/".to_string());
    }
    if name.is_empty() {
        return Err(bad("empty name"));
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in name.split('-') {
        if part.is_empty() {
            return Err(bad("'-' at the start or the end, or '--'"));
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(part);
        path.push_str(".slice");
        prefix.push_str(part);
        prefix.push('-');
    }
    Ok(path)
}

/// Parses `linux.cgroupsPath` for the systemd driver; `None` or empty gives
/// `system.slice:amphi:<id>`.
///
/// Errors: not three `:`-separated parts, an empty name, a part containing `/` or `..` or
/// whitespace, a bad slice name (see [`expand_slice`]).
pub fn parse(cgroups_path: Option<&Path>, id: &str) -> anyhow::Result<SystemdPath> {
    let s = cgroups_path
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("system.slice:amphi:{id}"));
    let parts: Vec<&str> = s.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        anyhow::bail!(
            "linux.cgroupsPath: {s:?}: --systemd-cgroup expects \"slice:prefix:name\" (3 parts separated by ':')"
        );
    };
    for (what, part) in [("slice", slice), ("prefix", prefix), ("name", name)] {
        if part.contains('/') || part.contains("..") || part.chars().any(char::is_whitespace) {
            anyhow::bail!(
                "linux.cgroupsPath: {s:?}: the {what} {part:?} must not contain '/', '..' or spaces"
            );
        }
    }
    if name.is_empty() {
        anyhow::bail!("linux.cgroupsPath: {s:?}: the name (third part) is empty");
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let unit = if name.ends_with(".slice") {
        expand_slice(name)?;
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    let base = expand_slice(slice)?;
    let path = if base == "/" {
        format!("/{unit}")
    } else {
        format!("{base}/{unit}")
    };
    Ok(SystemdPath {
        slice: slice.to_string(),
        unit,
        path,
        spec: format!("{slice}:{prefix}:{name}"),
    })
}

/// Whether systemd runs on this host (`/run/systemd/system` exists, as sd_booted(3) checks).
pub fn running() -> bool {
    Path::new(SYSTEMD_RUNNING).is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices() {
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(
            expand_slice("a-b-c.slice").unwrap(),
            "/a.slice/a-b.slice/a-b-c.slice"
        );
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        for bad in [
            "system",
            "a/b.slice",
            "-a.slice",
            "a-.slice",
            "a--b.slice",
            ".slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        let p = parse(Some(Path::new("machine-web.slice:amphi:c1")), "x").unwrap();
        assert_eq!(p.unit, "amphi-c1.scope");
        assert_eq!(p.path, "/machine.slice/machine-web.slice/amphi-c1.scope");
        assert_eq!(p.spec, "machine-web.slice:amphi:c1");
        let p = parse(Some(Path::new(":crio:abc")), "x").unwrap();
        assert_eq!(
            (p.slice.as_str(), p.path.as_str()),
            ("system.slice", "/system.slice/crio-abc.scope")
        );
        let p = parse(Some(Path::new("user.slice::c1")), "x").unwrap();
        assert_eq!(p.path, "/user.slice/c1.scope");
        let p = parse(Some(Path::new("-.slice:x:pod-1.slice")), "x").unwrap();
        assert_eq!(
            (p.unit.as_str(), p.path.as_str()),
            ("pod-1.slice", "/pod-1.slice")
        );
        let p = parse(None, "c9").unwrap();
        assert_eq!(p.path, "/system.slice/amphi-c9.scope");
        for bad in [
            "/amphi/c1",
            "system.slice:amphi",
            "a:b:c:d",
            "system.slice:amphi:",
            "system.slice:amphi:../x",
            "system.slice:am/phi:c1",
            "system.slice:amphi:..",
            "../x.slice:amphi:c1",
            "system:amphi:c1",
            "bad--name.slice:amphi:c1",
            "system.slice:a b:c1",
        ] {
            let e = parse(Some(Path::new(bad)), "x").unwrap_err().to_string();
            assert!(
                e.contains("systemd") || e.contains("linux.cgroupsPath"),
                "{bad}: {e}"
            );
        }
    }
}
