//! Executors: the last step of amphi's create pipeline.
//!
//! The shared pipeline (namespaces, id maps, mounts and rootfs, cgroups, process attributes) runs the
//! same way for every container; what runs at the end is decided once per container by [`select`] and
//! carried out by an [`Executor`]. The [`linux::LinuxExecutor`] `execve`s a binary found inside the
//! container.
//!
//! Lifecycle of an executor within one container (see `DESIGN.md`):
//! 1. [`Executor::prepare`], host side, in `amphi create` before any process is forked;
//! 2. [`Executor::load`], inside the init process once the rootfs is final (after `pivot_root`), still
//!    during `create`, so that a missing workload fails `create` and not `start`;
//! 3. [`Executor::exec`], inside the init process after `amphi start`: replaces the process with the
//!    workload and returns only on error.

use std::convert::Infallible;
use std::path::Path;

use oci_spec::runtime::Spec;

pub mod linux;

/// Annotation that marks a Kubernetes pod sandbox ("pause") container (CRI).
pub const ANNOTATION_CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";

/// An error of an executor. Its message is shown to the user as the reason `create` or `start` failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// `process.args` is missing or empty (runtime-spec config.md, "process.args": REQUIRED, at least one
    /// entry).
    #[error("process.args: must contain at least one entry")]
    EmptyArgs,
    /// The executable named by `process.args[0]` was not found inside the container.
    #[error(
        "process.args[0]: executable file {name:?} not found in $PATH ({path}) of the container"
    )]
    NotFound {
        /// `args[0]` as given.
        name: String,
        /// The search path that was used.
        path: String,
    },
    /// `process.args[0]` names something that cannot be executed (not a regular file, no execute bit).
    #[error("process.args[0]: {path:?} is not an executable file: {reason}")]
    NotExecutable {
        /// The path inside the container.
        path: String,
        /// Why it cannot be executed.
        reason: String,
    },
    /// A string of the process (an argument or environment entry) contains a NUL byte.
    #[error("{field}: contains a NUL byte")]
    Nul {
        /// The config field, e.g. `process.env[3]`.
        field: String,
    },
    /// The final exec failed.
    #[error("exec {path:?}: {source}")]
    Exec {
        /// The path that was executed.
        path: String,
        /// The errno of `execve(2)`.
        source: nix::Error,
    },
}

/// What an executor is chosen from: the container's config and where its rootfs is on the host.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    /// The container's config.json, already validated by the pipeline.
    pub spec: &'a Spec,
    /// The rootfs directory on the host (absolute), before any mount of the pipeline.
    pub rootfs: &'a Path,
    /// The file name the runtime binary was invoked under (argv\[0\] of amphi itself, base name only).
    pub invoked_as: &'a str,
}

impl Workload<'_> {
    /// The value of the annotation `key`, if any.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
    }

    /// True for a Kubernetes pod sandbox (pause) container, which is always run natively.
    pub fn is_sandbox(&self) -> bool {
        self.annotation(ANNOTATION_CRI_CONTAINER_TYPE) == Some("sandbox")
    }
}

/// The final step of the create pipeline, specialised per kind of workload.
pub trait Executor {
    /// Short name, recorded in the container state and shown in logs (e.g. `linux`).
    fn name(&self) -> &'static str;

    /// Host side, during `create`, before the init process is forked: check and prepare what can be
    /// done before the container's mounts exist. Errors fail `create`.
    fn prepare(&mut self, workload: &Workload<'_>) -> Result<(), ExecutorError>;

    /// Inside the init process, once the rootfs is final (after `pivot_root`, before the process's
    /// user and capabilities are applied), still during `create`: find the workload in the container's
    /// view. Errors fail `create`.
    fn load(&mut self, spec: &Spec) -> Result<(), ExecutorError>;

    /// Inside the init process after `start`: run the workload. Returns only on error.
    fn exec(&mut self) -> Result<Infallible, ExecutorError>;
}

/// Chooses the executor of a container, once, during `create`.
///
/// Order: a Kubernetes sandbox container is always Linux; otherwise the Linux executor (the only one
/// built so far).
pub fn select(workload: &Workload<'_>) -> Box<dyn Executor> {
    let _ = workload.is_sandbox();
    Box::new(linux::LinuxExecutor::default())
}
