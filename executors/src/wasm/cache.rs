//! The ahead-of-time cache: compiled modules and components on the host, keyed by the SHA-256 of the
//! workload and a hash of the engine's settings ([`EngineSettings`]), the key format ([`KEY_FORMAT`])
//! and the wasmtime release ([`WASMTIME_VERSION`]).
//!
//! Layout: `<dir>/<key>.cwasm` (wasmtime's serialized artefact) and `<dir>/<key>.sha256` (the hex
//! SHA-256 of that artefact). An entry is loaded only when the digest matches, so a truncated or
//! corrupted file is recompiled, never run; an entry from another engine configuration has another
//! key, and wasmtime itself rejects one that does not match its engine (major version, the compiler
//! settings it checks, tunables, Wasm features) or needs CPU features that the host lacks: such an
//! entry is recompiled and replaced. Both files are written to a temporary name and renamed into
//! place.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The default cache directory for root. Other users default to `$XDG_CACHE_HOME/amphi/wasm-cache`
/// (`~/.cache/amphi/wasm-cache`), chosen by the CLI.
pub const DEFAULT_DIR: &str = "/var/lib/amphi/wasm-cache";

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `data`, in hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// What a container's engine configuration depends on besides amphi's code (see `engine_config` in
/// the executor): the inputs that vary per container or per caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EngineSettings {
    /// `Config::memory_reservation`, in bytes (`None`: wasmtime's default).
    pub memory_reservation: Option<u64>,
    /// `Config::wasm_backtrace_details`: `WASMTIME_BACKTRACE_DETAILS=1` in the caller's environment.
    pub backtrace_details: bool,
}

/// The wasmtime release amphi is built with: the `=` pin in `executors/Cargo.toml` (a unit test
/// holds the two together). Part of every key: wasmtime's own check of an artefact compares only
/// the major version, and a patch release can change the code Cranelift emits.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// The version of the key and of the fixed part of the engine configuration: bump it with any change
/// to `engine_config` that is not in [`EngineSettings`], so that artefacts compiled under the old
/// configuration are not loaded (wasmtime does not check every compiler setting on load).
pub const KEY_FORMAT: u32 = 2;

/// The cache key of `module_bytes` run with `settings`: `<sha256 of the bytes>-<hash>`, where the hash
/// covers the settings, [`KEY_FORMAT`] and [`WASMTIME_VERSION`]. The key is known before any engine
/// is built, so that a hit is loaded by an engine without a compiler. The host's CPU features are not
/// in the key: wasmtime refuses an artefact that needs features the host lacks (then it is
/// recompiled).
pub fn key(settings: &EngineSettings, module_bytes: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    settings.hash(&mut h);
    KEY_FORMAT.hash(&mut h);
    WASMTIME_VERSION.hash(&mut h);
    format!("{}-{:016x}", sha256_hex(module_bytes), h.finish())
}

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache in `dir` (created 0700 when first written). An empty `dir` (a caller without a cache
    /// directory) disables the cache: nothing is read or written, never the current directory.
    pub fn new(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn artefact(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    fn digest(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.sha256"))
    }

    /// The artefact of `key` when present and intact (its digest matches), else `None`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        if self.dir.as_os_str().is_empty() {
            return None;
        }
        let data = std::fs::read(self.artefact(key)).ok()?;
        let want = std::fs::read_to_string(self.digest(key)).ok()?;
        if sha256_hex(&data) == want.trim() {
            Some(data)
        } else {
            log::warn!("wasm cache: entry {key} is corrupt; recompiling");
            None
        }
    }

    /// Stores `artefact` under `key` atomically.
    ///
    /// Errors: the directory cannot be created or written.
    pub fn put(&self, key: &str, artefact: &[u8]) -> std::io::Result<()> {
        if self.dir.as_os_str().is_empty() {
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        write_atomic(&self.artefact(key), artefact)?;
        write_atomic(&self.digest(key), sha256_hex(artefact).as_bytes())
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_bytes_and_the_settings() {
        let default = EngineSettings {
            memory_reservation: None,
            backtrace_details: false,
        };
        let small = EngineSettings {
            memory_reservation: Some(1 << 20),
            ..default
        };
        let details = EngineSettings {
            backtrace_details: true,
            ..default
        };
        let k = key(&default, b"(module)");
        assert_eq!(k, key(&default, b"(module)"), "not deterministic");
        assert!(k.starts_with(&sha256_hex(b"(module)")), "{k}");
        assert_ne!(k, key(&small, b"(module)"));
        assert_ne!(k, key(&details, b"(module)"));
        assert_ne!(k, key(&default, b"(module )"));
    }

    /// The version in the key is the one the executors crate pins.
    #[test]
    fn wasmtime_version_is_the_pinned_one() {
        let manifest = include_str!("../../Cargo.toml");
        for krate in ["wasmtime", "wasmtime-wasi"] {
            let pin = format!("{krate} = {{ version = \"={WASMTIME_VERSION}\"");
            assert!(
                manifest.contains(&pin),
                "executors/Cargo.toml has no {pin:?}"
            );
        }
    }

    #[test]
    fn corrupt_entries_are_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("c"));
        cache.put("k", b"artefact").unwrap();
        assert_eq!(cache.get("k").as_deref(), Some(&b"artefact"[..]));
        std::fs::write(dir.path().join("c/k.cwasm"), b"artefacT").unwrap();
        assert_eq!(cache.get("k"), None);
        assert_eq!(cache.get("missing"), None);
    }
}
