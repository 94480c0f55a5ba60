//! `cri-client`: a small Kubernetes CRI (v1) client for amphi's end-to-end test `tests/e2e/cri.sh`.
//!
//! It plays the kubelet's part against containerd's CRI plugin over its unix socket, one RPC (or one short
//! sequence) per subcommand, so that the test script can show every step as it happens:
//!
//! ```text
//! cri-client --socket SOCK version
//! cri-client --socket SOCK image REF                      ImageStatus: the image id, or an error if absent
//! cri-client --socket SOCK runp NAME --save FILE [--handler H] [--cgroup-parent P] [--log-dir D]
//!                                    [--annotation K=V]... RunPodSandbox; prints the pod id
//! cri-client --socket SOCK inspectp POD                   PodSandboxStatus (verbose): state=..., info
//! cri-client --socket SOCK create POD FILE NAME IMAGE [--log REL] [--annotation K=V]... [-- ARGS...]
//!                                    CreateContainer; prints the container id
//! cri-client --socket SOCK start CTR                      StartContainer
//! cri-client --socket SOCK status CTR                     ContainerStatus: state=... exit_code=... pid=...
//! cri-client --socket SOCK wait CTR SECS                  polls ContainerStatus until CONTAINER_EXITED
//! cri-client --socket SOCK exec CTR [--timeout S] -- ARGS ExecSync; prints stdout, stderr, exit_code=N
//! cri-client --socket SOCK stop CTR [TIMEOUT]             StopContainer (TIMEOUT seconds before SIGKILL)
//! cri-client --socket SOCK rm CTR                         RemoveContainer
//! cri-client --socket SOCK stopp POD | rmp POD            StopPodSandbox | RemovePodSandbox
//! cri-client --socket SOCK pods | ps                      ListPodSandbox | ListContainers: one id per line
//! ```
//!
//! Pods are host-network pods (`NamespaceOption.network = NODE`) so that no CNI plugin is needed; each
//! container gets its own PID namespace (`CONTAINER`, what the kubelet sets for v1 pods). `runp --save`
//! writes the PodSandboxConfig as JSON because CreateContainer needs it again.
//!
//! Exit status: 0 on success; 1 when an RPC fails (the gRPC status is printed on stderr); 2 on usage errors.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// `NamespaceMode::Container` and `NamespaceMode::Node` (CRI api.proto `enum NamespaceMode`).
const NS_POD: i32 = cri::NamespaceMode::Pod as i32;
const NS_CONTAINER: i32 = cri::NamespaceMode::Container as i32;
const NS_NODE: i32 = cri::NamespaceMode::Node as i32;

type Res<T> = Result<T, String>;

fn usage() -> String {
    "usage: cri-client --socket PATH <version|image|runp|inspectp|create|start|status|wait|exec|stop|rm|\
     stopp|rmp|pods|ps> ... (see the doc comment of src/main.rs)"
        .to_string()
}

/// Parses `K=V` into a pair; the error names the flag.
fn key_value(flag: &str, s: &str) -> Res<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{flag}: expected KEY=VALUE, got {s:?}")),
    }
}

/// Command-line words after the subcommand: flags with one value, `--` ends flags, the rest positional.
struct Words {
    positional: Vec<String>,
    flags: Vec<(String, String)>,
    rest: Vec<String>,
}

impl Words {
    fn parse(args: &[String], flags_with_value: &[&str]) -> Res<Words> {
        let mut w = Words {
            positional: vec![],
            flags: vec![],
            rest: vec![],
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--" {
                w.rest = it.cloned().collect();
                break;
            } else if flags_with_value.contains(&a.as_str()) {
                let v = it.next().ok_or_else(|| format!("{a}: missing value"))?;
                w.flags.push((a.clone(), v.clone()));
            } else if a.starts_with("--") {
                return Err(format!("unknown flag {a}; {}", usage()));
            } else {
                w.positional.push(a.clone());
            }
        }
        Ok(w)
    }

    fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn annotations(&self) -> Res<HashMap<String, String>> {
        self.flags
            .iter()
            .filter(|(k, _)| k == "--annotation")
            .map(|(k, v)| key_value(k, v))
            .collect()
    }

    fn pos(&self, i: usize, what: &str) -> Res<&str> {
        self.positional
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("missing argument {what}; {}", usage()))
    }
}

async fn channel(socket: &str) -> Res<Channel> {
    let path = socket.to_string();
    Endpoint::try_from("http://[::]:50051")
        .map_err(|e| format!("endpoint: {e}"))?
        .connect_timeout(Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| format!("connect to {socket}: {e}"))
}

fn rpc_err(what: &str) -> impl Fn(tonic::Status) -> String + '_ {
    move |s| format!("{what}: {:?}: {}", s.code(), s.message())
}

fn state_name(s: i32) -> &'static str {
    match cri::ContainerState::try_from(s) {
        Ok(cri::ContainerState::ContainerCreated) => "CONTAINER_CREATED",
        Ok(cri::ContainerState::ContainerRunning) => "CONTAINER_RUNNING",
        Ok(cri::ContainerState::ContainerExited) => "CONTAINER_EXITED",
        _ => "CONTAINER_UNKNOWN",
    }
}

fn pod_config(name: &str, w: &Words) -> Res<cri::PodSandboxConfig> {
    let ns = cri::NamespaceOption {
        network: NS_NODE,
        pid: NS_CONTAINER,
        ipc: NS_POD,
        ..Default::default()
    };
    Ok(cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("{name}-uid"),
            namespace: "amphi-e2e".to_string(),
            attempt: 0,
        }),
        // Empty, as the kubelet leaves it for host-network pods: with the node's UTS namespace there is no
        // hostname to set (runc refuses a hostname without a private UTS namespace).
        hostname: String::new(),
        log_directory: w.flag("--log-dir").unwrap_or_default().to_string(),
        labels: HashMap::from([("amphi-e2e".to_string(), "cri".to_string())]),
        annotations: w.annotations()?,
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: w.flag("--cgroup-parent").unwrap_or_default().to_string(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(ns),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

async fn run(args: Vec<String>) -> Res<()> {
    let (socket, cmd, rest) = match args.as_slice() {
        [flag, sock, cmd, rest @ ..] if flag == "--socket" => {
            (sock.clone(), cmd.clone(), rest.to_vec())
        }
        _ => return Err(usage()),
    };
    let ch = channel(&socket).await?;
    let mut rt = RuntimeServiceClient::new(ch.clone());
    let mut img = ImageServiceClient::new(ch);
    match cmd.as_str() {
        "version" => {
            let v = rt
                .version(cri::VersionRequest {
                    version: "v1".into(),
                })
                .await
                .map_err(rpc_err("Version"))?
                .into_inner();
            println!(
                "runtime_name={} runtime_version={} runtime_api_version={}",
                v.runtime_name, v.runtime_version, v.runtime_api_version
            );
        }
        "image" => {
            let w = Words::parse(&rest, &[])?;
            let r = img
                .image_status(cri::ImageStatusRequest {
                    image: Some(cri::ImageSpec {
                        image: w.pos(0, "REF")?.to_string(),
                        ..Default::default()
                    }),
                    verbose: false,
                })
                .await
                .map_err(rpc_err("ImageStatus"))?
                .into_inner();
            let i = r.image.ok_or("ImageStatus: image not found")?;
            println!("id={} repo_tags={:?} size={}", i.id, i.repo_tags, i.size);
        }
        "runp" => {
            let w = Words::parse(
                &rest,
                &[
                    "--save",
                    "--handler",
                    "--cgroup-parent",
                    "--log-dir",
                    "--annotation",
                ],
            )?;
            let config = pod_config(w.pos(0, "NAME")?, &w)?;
            let save = w.flag("--save").ok_or("runp: --save FILE is required")?;
            let json =
                serde_json::to_string(&config).map_err(|e| format!("runp: encode config: {e}"))?;
            std::fs::write(save, json).map_err(|e| format!("runp: write {save}: {e}"))?;
            let r = rt
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: w.flag("--handler").unwrap_or("amphi").to_string(),
                })
                .await
                .map_err(rpc_err("RunPodSandbox"))?
                .into_inner();
            println!("{}", r.pod_sandbox_id);
        }
        "inspectp" => {
            let w = Words::parse(&rest, &[])?;
            let r = rt
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: w.pos(0, "POD")?.to_string(),
                    verbose: true,
                })
                .await
                .map_err(rpc_err("PodSandboxStatus"))?
                .into_inner();
            let s = r.status.ok_or("PodSandboxStatus: no status")?;
            let state = match cri::PodSandboxState::try_from(s.state) {
                Ok(cri::PodSandboxState::SandboxReady) => "SANDBOX_READY",
                _ => "SANDBOX_NOTREADY",
            };
            println!("state={state} runtime_handler={}", s.runtime_handler);
            let mut ann: Vec<_> = s.annotations.iter().collect();
            ann.sort();
            for (k, v) in ann {
                println!("annotation {k}={v}");
            }
            if let Some(info) = r.info.get("info") {
                // containerd's verbose info: JSON with "pid", "runtimeHandler", "runtimeSpec", ...
                println!("info {info}");
            }
        }
        "create" => {
            let w = Words::parse(&rest, &["--log", "--annotation"])?;
            let pod = w.pos(0, "POD")?;
            let file = w.pos(1, "FILE")?;
            let name = w.pos(2, "NAME")?;
            let image = w.pos(3, "IMAGE")?;
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("create: read {file}: {e}"))?;
            let sandbox: cri::PodSandboxConfig =
                serde_json::from_str(&text).map_err(|e| format!("create: decode {file}: {e}"))?;
            let ns = sandbox
                .linux
                .as_ref()
                .and_then(|l| l.security_context.as_ref())
                .and_then(|s| s.namespace_options.clone());
            let config = cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: name.to_string(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                command: w.rest.clone(),
                log_path: w.flag("--log").unwrap_or_default().to_string(),
                annotations: w.annotations()?,
                labels: HashMap::from([("amphi-e2e".to_string(), "cri".to_string())]),
                linux: Some(cri::LinuxContainerConfig {
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        namespace_options: ns,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let r = rt
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod.to_string(),
                    config: Some(config),
                    sandbox_config: Some(sandbox),
                })
                .await
                .map_err(rpc_err("CreateContainer"))?
                .into_inner();
            println!("{}", r.container_id);
        }
        "start" => {
            let w = Words::parse(&rest, &[])?;
            rt.start_container(cri::StartContainerRequest {
                container_id: w.pos(0, "CTR")?.to_string(),
            })
            .await
            .map_err(rpc_err("StartContainer"))?;
        }
        "status" | "wait" => {
            let w = Words::parse(&rest, &[])?;
            let id = w.pos(0, "CTR")?.to_string();
            let limit = match cmd.as_str() {
                "wait" => {
                    let s = w.pos(1, "SECS")?;
                    Duration::from_secs(s.parse().map_err(|e| format!("wait: SECS {s:?}: {e}"))?)
                }
                _ => Duration::ZERO,
            };
            let started = Instant::now();
            loop {
                let r = rt
                    .container_status(cri::ContainerStatusRequest {
                        container_id: id.clone(),
                        verbose: true,
                    })
                    .await
                    .map_err(rpc_err("ContainerStatus"))?
                    .into_inner();
                let s = r.status.ok_or("ContainerStatus: no status")?;
                let exited = s.state == cri::ContainerState::ContainerExited as i32;
                if cmd == "status" || exited {
                    let pid = r
                        .info
                        .get("info")
                        .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
                        .and_then(|v| v.get("pid").and_then(serde_json::Value::as_i64))
                        .unwrap_or(0);
                    println!(
                        "state={} exit_code={} reason={} pid={} log_path={}",
                        state_name(s.state),
                        s.exit_code,
                        s.reason,
                        pid,
                        s.log_path
                    );
                    if !s.message.is_empty() {
                        println!("message={}", s.message);
                    }
                    break;
                }
                if started.elapsed() > limit {
                    return Err(format!(
                        "wait: {id} still {} after {limit:?}",
                        state_name(s.state)
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        "exec" => {
            let w = Words::parse(&rest, &["--timeout"])?;
            let timeout = match w.flag("--timeout") {
                Some(t) => t
                    .parse()
                    .map_err(|e| format!("exec: --timeout {t:?}: {e}"))?,
                None => 10,
            };
            let r = rt
                .exec_sync(cri::ExecSyncRequest {
                    container_id: w.pos(0, "CTR")?.to_string(),
                    cmd: w.rest.clone(),
                    timeout,
                })
                .await
                .map_err(rpc_err("ExecSync"))?
                .into_inner();
            print!("{}", String::from_utf8_lossy(&r.stdout));
            eprint!("{}", String::from_utf8_lossy(&r.stderr));
            println!("exit_code={}", r.exit_code);
        }
        "stop" => {
            let w = Words::parse(&rest, &[])?;
            let timeout = match w.positional.get(1) {
                Some(t) => t.parse().map_err(|e| format!("stop: TIMEOUT {t:?}: {e}"))?,
                None => 10,
            };
            rt.stop_container(cri::StopContainerRequest {
                container_id: w.pos(0, "CTR")?.to_string(),
                timeout,
            })
            .await
            .map_err(rpc_err("StopContainer"))?;
        }
        "rm" => {
            let w = Words::parse(&rest, &[])?;
            rt.remove_container(cri::RemoveContainerRequest {
                container_id: w.pos(0, "CTR")?.to_string(),
            })
            .await
            .map_err(rpc_err("RemoveContainer"))?;
        }
        "stopp" => {
            let w = Words::parse(&rest, &[])?;
            rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: w.pos(0, "POD")?.to_string(),
            })
            .await
            .map_err(rpc_err("StopPodSandbox"))?;
        }
        "rmp" => {
            let w = Words::parse(&rest, &[])?;
            rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: w.pos(0, "POD")?.to_string(),
            })
            .await
            .map_err(rpc_err("RemovePodSandbox"))?;
        }
        "pods" => {
            let r = rt
                .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                .await
                .map_err(rpc_err("ListPodSandbox"))?
                .into_inner();
            for p in r.items {
                println!("{}", p.id);
            }
        }
        "ps" => {
            let r = rt
                .list_containers(cri::ListContainersRequest { filter: None })
                .await
                .map_err(rpc_err("ListContainers"))?
                .into_inner();
            for c in r.containers {
                println!("{} {}", c.id, state_name(c.state));
            }
        }
        other => return Err(format!("unknown subcommand {other:?}; {}", usage())),
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cri-client: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("cri-client: {e}");
        let code =
            if e.starts_with("usage") || e.contains("missing argument") || e.contains("unknown") {
                2
            } else {
                1
            };
        std::process::exit(code);
    }
}
