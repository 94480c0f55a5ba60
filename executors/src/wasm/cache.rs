//! The ahead-of-time cache: compiled modules and components on the host, keyed by the SHA-256 of the
//! workload and a hash of the engine's settings ([`EngineSettings`]) and of amphi's and wasmtime's
//! versions.
//!
//! Layout: `<dir>/<key>.cwasm` (wasmtime's serialized artefact) and `<dir>/<key>.sha256` (the hex
//! SHA-256 of that artefact). An entry is loaded only when the digest matches, so a truncated or
//! corrupted file is recompiled, never run; an entry from another engine configuration has another
//! key, and wasmtime itself rejects one that does not match its engine (wasmtime version, compiler
//! settings, tunables, Wasm features) or needs CPU features that the host lacks: such an entry is
//! recompiled and replaced. Both files are written to a
//! temporary name and renamed into place.

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

/// What a container's engine configuration depends on, beyond amphi's code: the linear-memory
/// reservation in bytes (`None`: wasmtime's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EngineSettings {
    /// `Config::memory_reservation`, in bytes.
    pub memory_reservation: Option<u64>,
}

/// The wasmtime release amphi is built with (pinned in `executors/Cargo.toml`), part of every key.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// The cache key of `module_bytes` run with `settings`: `<sha256 of the bytes>-<hash>`, where the hash
/// covers the settings, amphi's version and wasmtime's. The key is known before any engine is built,
/// so that a hit is loaded by an engine without a compiler. The host's CPU features are not in the
/// key: wasmtime refuses an artefact that needs features the host lacks (then it is recompiled).
pub fn key(settings: &EngineSettings, module_bytes: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    settings.hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
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
        };
        let small = EngineSettings {
            memory_reservation: Some(1 << 20),
        };
        let k = key(&default, b"(module)");
        assert_eq!(k, key(&default, b"(module)"), "not deterministic");
        assert!(k.starts_with(&sha256_hex(b"(module)")), "{k}");
        assert_ne!(k, key(&small, b"(module)"));
        assert_ne!(k, key(&default, b"(module )"));
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
