//! User-namespace id maps (config-linux.md "User namespace mappings", user_namespaces(7)).

use oci_spec::runtime::LinuxIdMapping;

/// Renders mappings in the kernel's `uid_map` format: one `"<containerID> <hostID> <size>\n"` line
/// per range.
pub fn render(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

fn write_map(pid: i32, file: &str, field: &str, maps: &[LinuxIdMapping]) -> anyhow::Result<()> {
    let data = render(maps);
    // The kernel takes the whole map in one write(2); a second write fails with EPERM. The file is
    // opened through a verified procfs handle (escape class 6).
    crate::security::procfs::write(&format!("{pid}/{file}"), data.as_bytes())
        .map_err(|e| anyhow::anyhow!("{field}: write {:?}: {e}", data.trim_end()))
}

/// Writes `linux.uidMappings` and `linux.gidMappings` for process `pid`, which has just unshared its
/// user namespace. Run by the parent: as root it writes the maps itself; as an unprivileged user see
/// [`write_maps_unprivileged`].
///
/// Errors: the kernel refuses a map (overlapping ranges, more than 340 lines, ids not mapped in the
/// parent namespace); the message names the field and the map.
pub fn write_maps(
    pid: i32,
    uid_maps: &[LinuxIdMapping],
    gid_maps: &[LinuxIdMapping],
) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return write_maps_unprivileged(pid, uid_maps, gid_maps);
    }
    write_map(pid, "uid_map", "linux.uidMappings", uid_maps)?;
    write_map(pid, "gid_map", "linux.gidMappings", gid_maps)?;
    Ok(())
}

/// True when `maps` is the one mapping an unprivileged process may write itself
/// (user_namespaces(7) "Defining user and group ID mappings"): a single range of size 1 whose host
/// id is the caller's own effective id.
fn is_own_single(maps: &[LinuxIdMapping], own: u32) -> bool {
    matches!(maps, [m] if m.size() == 1 && m.host_id() == own)
}

/// Runs `tool` (`newuidmap` or `newgidmap`, from shadow's uidmap package) as
/// `tool <pid> <containerID> <hostID> <size> ...`; the setuid helper checks each range against the
/// caller's entries in `/etc/subuid` or `/etc/subgid` (subuid(5)) and writes the map.
fn run_id_helper(tool: &str, pid: i32, field: &str, maps: &[LinuxIdMapping]) -> anyhow::Result<()> {
    let mut args = vec![pid.to_string()];
    for m in maps {
        args.extend([
            m.container_id().to_string(),
            m.host_id().to_string(),
            m.size().to_string(),
        ]);
    }
    let shown = render(maps).trim_end().replace('\n', ", ");
    let subfile = if tool == "newuidmap" {
        "/etc/subuid"
    } else {
        "/etc/subgid"
    };
    let out = std::process::Command::new(tool)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "{field}: [{shown}] needs {tool} (package uidmap) for an unprivileged user: run {tool}: {e}"
            )
        })?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr)
            .trim()
            .replace('\n', "; ");
        anyhow::bail!(
            "{field}: mapping [{shown}] refused: {tool} failed ({}): {why}; an unprivileged user may \
             map only its own id and the subordinate ranges given to it in {subfile}",
            out.status
        );
    }
    Ok(())
}

/// Writes the id maps of `pid` as an unprivileged caller (rootless): a single mapping of the caller's
/// own uid (gid) is written directly (for the gid map after writing `deny` to
/// `/proc/<pid>/setgroups`, as the kernel requires); anything else goes through the setuid helpers
/// `newuidmap(1)` / `newgidmap(1)`, which allow only the caller's subordinate ranges.
///
/// Errors: no mapping at all (an unprivileged user namespace without a map cannot become root), a
/// refused write, a missing helper, or a helper's refusal; each names `linux.uidMappings` or
/// `linux.gidMappings` and the map.
pub fn write_maps_unprivileged(
    pid: i32,
    uid_maps: &[LinuxIdMapping],
    gid_maps: &[LinuxIdMapping],
) -> anyhow::Result<()> {
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    if uid_maps.is_empty() {
        anyhow::bail!("linux.uidMappings: a rootless container needs a mapping (e.g. containerID 0 -> hostID {euid}, size 1)");
    }
    if gid_maps.is_empty() {
        anyhow::bail!("linux.gidMappings: a rootless container needs a mapping (e.g. containerID 0 -> hostID {egid}, size 1)");
    }
    if is_own_single(uid_maps, euid) {
        write_map(pid, "uid_map", "linux.uidMappings", uid_maps)?;
    } else {
        run_id_helper("newuidmap", pid, "linux.uidMappings", uid_maps)?;
    }
    if is_own_single(gid_maps, egid) {
        crate::security::procfs::write(&format!("{pid}/setgroups"), b"deny")
            .map_err(|e| anyhow::anyhow!("linux.gidMappings: write \"deny\": {e}"))?;
        write_map(pid, "gid_map", "linux.gidMappings", gid_maps)?;
    } else {
        run_id_helper("newgidmap", pid, "linux.gidMappings", gid_maps)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_ranges() {
        let maps: Vec<LinuxIdMapping> = serde_json::from_str(
            r#"[{"containerID":0,"hostID":100000,"size":1000},{"containerID":1000,"hostID":1000,"size":1}]"#,
        )
        .unwrap();
        assert_eq!(render(&maps), "0 100000 1000\n1000 1000 1\n");
        assert!(!is_own_single(&maps, 1000));
        assert!(is_own_single(&maps[1..], 1000));
        assert!(!is_own_single(&maps[1..], 1001));
    }
}
