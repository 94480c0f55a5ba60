//! amphi: an OCI container runtime for Linux containers and WebAssembly (WASI) workloads.
//!
//! The crate is laid out as `DESIGN.md` sketches: [`cli`] turns flags into calls of [`container`],
//! which drives the create pipeline of [`process`] (parent -> intermediate -> init) over [`bundle`],
//! [`namespaces`], [`user_ns`], [`rootfs`], [`cgroups`] and [`security`] ([`rootless`] for unprivileged callers), and hands the last step to an
//! executor of the `amphi-executors` crate.

pub mod bundle;
pub mod cgroups;
pub mod cli;
pub mod container;
pub mod hooks;
pub mod logging;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod rootless;
pub mod security;
pub mod tty;
pub mod user_ns;
pub mod utils;

/// The version of the OCI runtime-spec this build follows (runtime-spec `specs-go/version.go`).
pub const OCI_SPEC_VERSION: &str = "1.2.1";
