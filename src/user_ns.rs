//! User-namespace id maps (config-linux.md "User namespace mappings", user_namespaces(7)).

use std::io::Write;

use oci_spec::runtime::LinuxIdMapping;

/// Renders mappings in the kernel's `uid_map` format: one `"<containerID> <hostID> <size>\n"` line
/// per range.
pub fn render(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

fn write_map(pid: i32, file: &str, field: &str, maps: &[LinuxIdMapping]) -> anyhow::Result<()> {
    let path = format!("/proc/{pid}/{file}");
    let data = render(maps);
    // The kernel takes the whole map in one write(2); a second write fails with EPERM.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("{field}: open {path}: {e}"))?;
    f.write_all(data.as_bytes())
        .map_err(|e| anyhow::anyhow!("{field}: write {path} ({:?}): {e}", data.trim_end()))?;
    Ok(())
}

/// Writes `linux.uidMappings` and `linux.gidMappings` for process `pid`, which has just unshared its
/// user namespace. Run by the parent, as root in the host's user namespace.
///
/// Errors: the kernel refuses a map (overlapping ranges, more than 340 lines, ids not mapped in the
/// parent namespace); the message names the field and the map.
pub fn write_maps(
    pid: i32,
    uid_maps: &[LinuxIdMapping],
    gid_maps: &[LinuxIdMapping],
) -> anyhow::Result<()> {
    write_map(pid, "uid_map", "linux.uidMappings", uid_maps)?;
    write_map(pid, "gid_map", "linux.gidMappings", gid_maps)?;
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
    }
}
