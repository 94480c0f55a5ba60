//! The Linux executor: `execve(2)` of a binary found inside the container.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use oci_spec::runtime::Spec;

use crate::{Executor, ExecutorError, Workload};

/// The search path used when `process.env` has no `PATH` (the same default as glibc's `execvp`).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Executes `process.args` with `process.env` as a native Linux process.
#[derive(Debug, Default)]
pub struct LinuxExecutor {
    loaded: Option<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

fn cstrings(items: &[String], field: &str) -> Result<Vec<CString>, ExecutorError> {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            CString::new(s.as_bytes()).map_err(|_| ExecutorError::Nul {
                field: format!("{field}[{i}]"),
            })
        })
        .collect()
}

/// Checks that `path` (in the current mount namespace and root) is a regular file with an execute bit.
fn check_executable(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        // runc's wording: podman matches "permission denied" to report exit status 126.
        return Err("permission denied (no execute permission)".into());
    }
    Ok(())
}

/// Resolves `name` the way `execvp(3)` would with the search path `search` (colon separated; an empty
/// entry means the current directory). Names containing a `/` are used as they are.
///
/// Errors: [`ExecutorError::NotFound`] when no entry holds an executable file,
/// [`ExecutorError::NotExecutable`] when a name with a `/` is not executable.
pub fn resolve(name: &str, search: &str) -> Result<String, ExecutorError> {
    if name.contains('/') {
        return check_executable(Path::new(name))
            .map(|_| name.to_string())
            .map_err(|reason| ExecutorError::NotExecutable {
                path: name.to_string(),
                reason,
            });
    }
    if !name.is_empty() {
        for dir in search.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let candidate = format!("{}/{}", dir.trim_end_matches('/'), name);
            if check_executable(Path::new(&candidate)).is_ok() {
                return Ok(candidate);
            }
        }
    }
    Err(ExecutorError::NotFound {
        name: name.to_string(),
        path: search.to_string(),
    })
}

impl Executor for LinuxExecutor {
    fn name(&self) -> &'static str {
        "linux"
    }

    fn prepare(&mut self, workload: &Workload<'_>) -> Result<(), ExecutorError> {
        match workload
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.args().as_ref())
        {
            Some(args) if !args.is_empty() => Ok(()),
            _ => Err(ExecutorError::EmptyArgs),
        }
    }

    fn load(&mut self, spec: &Spec) -> Result<(), ExecutorError> {
        let process = spec.process().as_ref().ok_or(ExecutorError::EmptyArgs)?;
        let args = process.args().as_deref().unwrap_or_default();
        let first = args.first().ok_or(ExecutorError::EmptyArgs)?;
        let env = process.env().as_deref().unwrap_or_default();
        let search = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        let path = resolve(first, search)?;
        self.loaded = Some(Loaded {
            path: CString::new(path).map_err(|_| ExecutorError::Nul {
                field: "process.args[0]".into(),
            })?,
            argv: cstrings(args, "process.args")?,
            envp: cstrings(env, "process.env")?,
        });
        Ok(())
    }

    fn exec(&mut self, _notify_started: &mut dyn FnMut()) -> Result<Infallible, ExecutorError> {
        let loaded = self.loaded.take().ok_or(ExecutorError::EmptyArgs)?;
        let err = match nix::unistd::execve(&loaded.path, &loaded.argv, &loaded.envp) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        Err(ExecutorError::Exec {
            path: loaded.path.to_string_lossy().into_owned(),
            source: err,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_searches_path_in_order() {
        let dir = std::env::temp_dir().join(format!("amphi-exec-test-{}", std::process::id()));
        let a = dir.join("a");
        let b = dir.join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("tool"), "x").unwrap(); // not executable: skipped
        std::fs::write(b.join("tool"), "x").unwrap();
        std::fs::set_permissions(b.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let search = format!("{}:{}", a.display(), b.display());
        assert_eq!(
            resolve("tool", &search).unwrap(),
            format!("{}/tool", b.display())
        );
        assert!(matches!(
            resolve("missing", &search),
            Err(ExecutorError::NotFound { .. })
        ));
        assert!(matches!(
            resolve(&format!("{}/tool", a.display()), ""),
            Err(ExecutorError::NotExecutable { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
