//! The device controller of cgroup v2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program built from the
//! container's device rules, loaded and attached with bpf(2).
//!
//! cgroup v2 has no `devices.allow`/`devices.deny` files; the kernel instead runs every eBPF program
//! attached to the cgroup (and its ancestors) with `BPF_CGROUP_DEVICE` on each open or mknod of a
//! device node, and allows the access only if all of them return 1 (Documentation/admin-guide/
//! cgroup-v2.rst "Device controller"; include/uapi/linux/bpf.h `struct bpf_cgroup_dev_ctx`,
//! `BPF_DEVCG_ACC_*`, `BPF_DEVCG_DEV_*`). The context holds three `u32`s: `access_type`
//! (`access << 16 | type`), `major`, `minor`.
//!
//! The program is a straight list of blocks, one per rule, emitted from the last rule to the first so
//! that the first block that matches returns, i.e. the last matching rule wins, as runc's
//! devicefilter does; with no match the access is denied (the same "deny all first" start as the v1
//! path). A rule matches when the type (unless `a`), major and minor (unless `*`) are equal and:
//! - allow rule: every requested access bit is in the rule (`rw` allows a read-write open);
//! - deny rule: any requested access bit is in the rule (a `w` deny refuses a read-write open, as
//!   the v1 controller does after it removes `w` from an exception).
//!
//! The instructions are encoded here (a dozen opcodes) rather than through a crate: aya and libbpf-rs
//! bring an ELF loader, BTF and a C toolchain (libbpf-rs) for a program of ~60 instructions, and rbpf
//! is only an interpreter.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One eBPF instruction (`struct bpf_insn` of include/uapi/linux/bpf.h): opcode, destination and
/// source registers (4 bits each), signed 16-bit jump offset (in instructions) and 32-bit immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// `BPF_CLASS | BPF_OP | BPF_SRC` (linux/bpf_common.h).
    pub code: u8,
    /// Destination register, 0..=10.
    pub dst: u8,
    /// Source register, 0..=10.
    pub src: u8,
    /// Jump offset (instructions to skip) or memory offset (bytes).
    pub off: i16,
    /// Immediate operand.
    pub imm: i32,
}

/// Opcodes used by the device program (linux/bpf_common.h, linux/bpf.h).
pub mod op {
    /// `BPF_LDX | BPF_MEM | BPF_W`: `dst = *(u32 *)(src + off)`.
    pub const LDX_W: u8 = 0x61;
    /// `BPF_ALU | BPF_AND | BPF_K`: `dst = (u32)dst & imm`.
    pub const AND32_K: u8 = 0x54;
    /// `BPF_ALU | BPF_XOR | BPF_K`: `dst = (u32)dst ^ imm`.
    pub const XOR32_K: u8 = 0xa4;
    /// `BPF_ALU | BPF_RSH | BPF_K`: `dst = (u32)dst >> imm`.
    pub const RSH32_K: u8 = 0x74;
    /// `BPF_ALU64 | BPF_OR | BPF_X`: `dst |= src`.
    pub const OR64_X: u8 = 0x4f;
    /// `BPF_ALU64 | BPF_SUB | BPF_K`: `dst -= imm` (64-bit, wrapping).
    pub const SUB64_K: u8 = 0x17;
    /// `BPF_ALU64 | BPF_RSH | BPF_K`: `dst >>= imm` (64-bit, logical).
    pub const RSH64_K: u8 = 0x77;
    /// `BPF_ALU64 | BPF_MOV | BPF_K`: `dst = imm`.
    pub const MOV64_K: u8 = 0xb7;
    /// `BPF_JMP | BPF_JNE | BPF_K`: `if dst != imm goto +off`.
    pub const JNE_K: u8 = 0x55;
    /// `BPF_JMP | BPF_EXIT`: return r0.
    pub const EXIT: u8 = 0x95;
}

/// `BPF_DEVCG_DEV_BLOCK`.
pub const DEV_BLOCK: u32 = 1;
/// `BPF_DEVCG_DEV_CHAR`.
pub const DEV_CHAR: u32 = 2;
/// `BPF_DEVCG_ACC_MKNOD`.
pub const ACC_MKNOD: u32 = 1;
/// `BPF_DEVCG_ACC_READ`.
pub const ACC_READ: u32 = 2;
/// `BPF_DEVCG_ACC_WRITE`.
pub const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One device rule: `allow`, the device type (`None` for `a`, all types), major and minor (`None`
/// for `*`) and the access bits (`ACC_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Allow (true) or deny.
    pub allow: bool,
    /// `DEV_CHAR`, `DEV_BLOCK` or `None` (any type).
    pub typ: Option<u32>,
    /// Major number, `None` for any.
    pub major: Option<u32>,
    /// Minor number, `None` for any.
    pub minor: Option<u32>,
    /// `ACC_*` bits, never 0.
    pub access: u32,
}

/// Parses a rule in the v1 `devices.allow` format (`TYPE MAJOR:MINOR ACCESS`, e.g. `c 1:3 rwm`,
/// `a *:* rwm`; see Documentation/admin-guide/cgroup-v1/devices.rst), the format that
/// [`super::device_rule`] writes, so that v1 and v2 apply the very same list.
///
/// Errors: a type other than `a`, `b`, `c`; a number that is not `*` or a decimal below 2^31; an
/// access string empty or with letters other than `r`, `w`, `m`; the error names the field.
pub fn parse_rule(allow: bool, line: &str) -> anyhow::Result<Rule> {
    let mut parts = line.split_whitespace();
    let (Some(t), Some(nums), Some(acc), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        anyhow::bail!("device rule {line:?}: expected \"TYPE MAJOR:MINOR ACCESS\"");
    };
    let typ = match t {
        "a" => None,
        "c" => Some(DEV_CHAR),
        "b" => Some(DEV_BLOCK),
        _ => anyhow::bail!("device rule {line:?}: type {t:?} is not a, b or c"),
    };
    let (ma, mi) = nums
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("device rule {line:?}: expected MAJOR:MINOR"))?;
    let num = |what: &str, s: &str| -> anyhow::Result<Option<u32>> {
        if s == "*" {
            return Ok(None);
        }
        s.parse::<u32>()
            .ok()
            .filter(|n| *n <= i32::MAX as u32)
            .map(Some)
            .ok_or_else(|| {
                anyhow::anyhow!("device rule {line:?}: {what} {s:?} is not * or a number")
            })
    };
    let mut access = 0;
    for ch in acc.chars() {
        access |= match ch {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => anyhow::bail!("device rule {line:?}: access {acc:?} may only hold r, w and m"),
        };
    }
    if access == 0 {
        anyhow::bail!("device rule {line:?}: empty access");
    }
    Ok(Rule {
        allow,
        typ,
        major: num("major", ma)?,
        minor: num("minor", mi)?,
        access,
    })
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}

/// Builds the program for `rules` (in the order they are given; the last matching rule wins; no
/// match denies).
///
/// r1 holds the context throughout. Each rule is one block that computes, without branches, a
/// value in r2 that is 0 exactly when the rule matches (r3 is scratch):
/// - type: `(ctx.access_type & 0xffff) ^ TYPE`;
/// - allow rule: `requested & !ACCESS` (a requested bit the rule lacks);
/// - deny rule: `((requested & ACCESS) - 1) >> 63` (64-bit: 1 when no requested bit is in the rule);
/// - major, minor: `ctx.major ^ MAJOR`, `ctx.minor ^ MINOR`;
///
/// OR-ed together, then one `if r2 != 0 goto next-block`, then `r0 = ALLOW; exit`. One conditional
/// jump per rule keeps the verifier linear: with a jump per condition, the verifier kept one
/// pending branch per condition on its stack and refused about 4,000 rules ("the sequence of 8193
/// jumps is too complex"), and when the fields were loaded once in a prologue, what each block's
/// comparisons proved about them ("major == 703") kept states apart and 400 rules exceeded its
/// 1,000,000 processed instructions (E2BIG).
///
/// A rule matching everything ends the program (the verifier refuses unreachable instructions, so
/// rules before it are not emitted).
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = Vec::new();
    for r in rules.iter().rev() {
        let mut block: Vec<Insn> = Vec::new();
        if let Some(t) = r.typ {
            block.push(insn(op::LDX_W, 3, 1, 0, 0));
            block.push(insn(op::AND32_K, 3, 0, 0, 0xffff));
            block.push(insn(op::XOR32_K, 3, 0, 0, t as i32));
            block.push(insn(op::OR64_X, 2, 3, 0, 0));
        }
        if r.access & ACC_ALL != ACC_ALL {
            block.push(insn(op::LDX_W, 3, 1, 0, 0));
            block.push(insn(op::RSH32_K, 3, 0, 0, 16));
            if r.allow {
                block.push(insn(op::AND32_K, 3, 0, 0, (!r.access & ACC_ALL) as i32));
            } else {
                block.push(insn(op::AND32_K, 3, 0, 0, r.access as i32));
                block.push(insn(op::SUB64_K, 3, 0, 0, 1));
                block.push(insn(op::RSH64_K, 3, 0, 0, 63));
            }
            block.push(insn(op::OR64_X, 2, 3, 0, 0));
        }
        for (off, n) in [(4, r.major), (8, r.minor)] {
            if let Some(n) = n {
                block.push(insn(op::LDX_W, 3, 1, off, 0));
                block.push(insn(op::XOR32_K, 3, 0, 0, n as i32));
                block.push(insn(op::OR64_X, 2, 3, 0, 0));
            }
        }
        let catch_all = block.is_empty();
        if !catch_all {
            p.push(insn(op::MOV64_K, 2, 0, 0, 0));
            p.extend(block);
            p.push(insn(op::JNE_K, 2, 0, 2, 0));
        }
        p.push(insn(op::MOV64_K, 0, 0, 0, i32::from(r.allow)));
        p.push(insn(op::EXIT, 0, 0, 0, 0));
        if catch_all {
            return p;
        }
    }
    p.push(insn(op::MOV64_K, 0, 0, 0, 0));
    p.push(insn(op::EXIT, 0, 0, 0, 0));
    p
}

/// The bytes of `insns` as the kernel reads them (`struct bpf_insn`, little- or big-endian host).
pub fn encode(insns: &[Insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(insns.len() * 8);
    for i in insns {
        out.push(i.code);
        out.push(if cfg!(target_endian = "little") {
            (i.src << 4) | (i.dst & 0x0f)
        } else {
            (i.dst << 4) | (i.src & 0x0f)
        });
        out.extend_from_slice(&i.off.to_ne_bytes());
        out.extend_from_slice(&i.imm.to_ne_bytes());
    }
    out
}

/// The most instructions a privileged program may have (`BPF_COMPLEXITY_LIMIT_INSNS` of
/// include/linux/bpf.h, Linux 5.2 and later); the kernel refuses longer ones with E2BIG.
pub const MAX_INSNS: usize = 1_000_000;

// bpf(2) commands and constants (include/uapi/linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// A zeroed `union bpf_attr` prefix; fields are written at their offsets in bpf.h.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn get_u32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[off..off + 4]);
        u32::from_ne_bytes(b)
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, writable 128-byte buffer laid out as the prefix of
    // `union bpf_attr` for `cmd`; every pointer stored in it (instructions, license, log, id array)
    // points to memory that the caller keeps alive for the duration of this call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` was just returned by bpf(2) as a new file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Loads the program (`BPF_PROG_LOAD`, type `BPF_PROG_TYPE_CGROUP_DEVICE`); on a verifier error the
/// load is retried with a log, whose text is returned in the error.
fn load(insns: &[Insn]) -> anyhow::Result<OwnedFd> {
    let code = encode(insns);
    let license = b"Apache\0";
    let try_load = |log: Option<&mut Vec<u8>>| {
        let mut attr = Attr::new();
        attr.u32(0, BPF_PROG_TYPE_CGROUP_DEVICE)
            .u32(4, insns.len() as u32)
            .u64(8, code.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(68, BPF_CGROUP_DEVICE);
        if let Some(log) = log {
            attr.u32(24, 1)
                .u32(28, log.len() as u32)
                .u64(32, log.as_mut_ptr() as u64);
        }
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    match try_load(None) {
        Ok(fd) => Ok(owned(fd)),
        Err(e) => {
            let mut log = vec![0u8; 64 * 1024];
            let _ = try_load(Some(&mut log));
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            // The verifier's conclusion is in its last lines; the rest is a trace of every
            // instruction (tens of kilobytes for a long program).
            let lines: Vec<&str> = text.trim().lines().collect();
            let tail = lines[lines.len().saturating_sub(2)..].join("; ");
            anyhow::bail!(
                "linux.resources.devices: load the cgroup v2 device program ({} instructions): {e}{}",
                insns.len(),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!("; verifier: {tail}")
                }
            )
        }
    }
}

/// Ids of the `BPF_CGROUP_DEVICE` programs attached directly to the cgroup `cg` (`BPF_PROG_QUERY`).
pub fn attached(cg: &OwnedFd) -> std::io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = Attr::new();
    attr.u32(0, cg.as_raw_fd() as u32)
        .u32(4, BPF_CGROUP_DEVICE)
        .u64(16, ids.as_mut_ptr() as u64)
        .u32(24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut attr)?;
    let n = (attr.get_u32(24) as usize).min(ids.len());
    ids.truncate(n);
    Ok(ids)
}

fn open_cgroup(dir: &Path) -> anyhow::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| anyhow::anyhow!("linux.resources.devices: open {}: {e}", dir.display()))?;
    Ok(fd)
}

/// Ids of the device programs attached to the cgroup v2 directory `dir`.
///
/// Errors: the directory cannot be opened or queried.
pub fn attached_to(dir: &Path) -> anyhow::Result<Vec<u32>> {
    let cg = open_cgroup(dir)?;
    attached(&cg).map_err(|e| anyhow::anyhow!("BPF_PROG_QUERY on {}: {e}", dir.display()))
}

/// Loads the program for `rules` and attaches it to the cgroup v2 directory `dir` with
/// `BPF_F_ALLOW_MULTI`, then detaches the device programs that were attached there before (a
/// replacement on `update`; both apply, i.e. the stricter one, for the short time in between).
/// No file descriptor or pin is kept: the attachment holds the program.
///
/// Errors: bpf(2) fails (e.g. EPERM without CAP_SYS_ADMIN/CAP_BPF, a verifier error), naming the
/// step and the directory.
pub fn apply(dir: &Path, rules: &[Rule]) -> anyhow::Result<()> {
    let insns = program(rules);
    if insns.len() > MAX_INSNS {
        anyhow::bail!(
            "linux.resources.devices: {} rules make a cgroup v2 device program of {} instructions, \
             more than the kernel loads ({MAX_INSNS})",
            rules.len(),
            insns.len()
        );
    }
    let cg = open_cgroup(dir)?;
    let old = attached(&cg).map_err(|e| {
        anyhow::anyhow!(
            "linux.resources.devices: BPF_PROG_QUERY on {}: {e}",
            dir.display()
        )
    })?;
    let prog = load(&insns)?;
    let mut attr = Attr::new();
    attr.u32(0, cg.as_raw_fd() as u32)
        .u32(4, prog.as_raw_fd() as u32)
        .u32(8, BPF_CGROUP_DEVICE)
        .u32(12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| {
        anyhow::anyhow!(
            "linux.resources.devices: BPF_PROG_ATTACH to {}: {e}",
            dir.display()
        )
    })?;
    for id in old {
        let mut attr = Attr::new();
        attr.u32(0, id);
        let old_fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) {
            Ok(fd) => owned(fd),
            // Detached meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => anyhow::bail!(
                "linux.resources.devices: BPF_PROG_GET_FD_BY_ID {id} (old program of {}): {e}",
                dir.display()
            ),
        };
        let mut attr = Attr::new();
        attr.u32(0, cg.as_raw_fd() as u32)
            .u32(4, old_fd.as_raw_fd() as u32)
            .u32(8, BPF_CGROUP_DEVICE);
        match bpf(BPF_PROG_DETACH, &mut attr) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => anyhow::bail!(
                "linux.resources.devices: BPF_PROG_DETACH of old program {id} from {}: {e}",
                dir.display()
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands for the context pointer that the kernel passes in r1.
    const CTX: u64 = 0xc0_7e_c7;

    /// Runs the program on a device context, as the kernel would: returns r0.
    fn run(p: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | typ, major, minor];
        let mut r = [0u64; 11];
        r[1] = CTX;
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (d, s) = (i.dst as usize, i.src as usize);
            pc += 1;
            let jump = |cond: bool, pc: &mut usize| {
                if cond {
                    *pc = (*pc as i64 + i64::from(i.off)) as usize;
                }
            };
            match i.code {
                op::LDX_W => {
                    assert_eq!(s, 1, "loads only from the context (r1)");
                    assert_eq!(r[1], CTX, "r1 still holds the context");
                    r[d] = u64::from(ctx[i.off as usize / 4]);
                }
                op::AND32_K => r[d] = (r[d] as u32 & i.imm as u32) as u64,
                op::XOR32_K => r[d] = (r[d] as u32 ^ i.imm as u32) as u64,
                op::RSH32_K => r[d] = ((r[d] as u32) >> i.imm) as u64,
                op::OR64_X => r[d] |= r[s],
                op::SUB64_K => r[d] = r[d].wrapping_sub(i.imm as i64 as u64),
                op::RSH64_K => r[d] >>= i.imm,
                op::MOV64_K => r[d] = i.imm as i64 as u64,
                op::JNE_K => jump(r[d] != i.imm as i64 as u64, &mut pc),
                op::EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
            assert!(pc < p.len(), "ran off the end");
        }
    }

    fn rules(list: &[(bool, &str)]) -> Vec<Rule> {
        list.iter()
            .map(|(a, l)| parse_rule(*a, l).unwrap())
            .collect()
    }

    const R: u32 = ACC_READ;
    const W: u32 = ACC_WRITE;
    const M: u32 = ACC_MKNOD;

    #[test]
    fn empty_denies_everything() {
        let p = program(&[]);
        assert_eq!(p.len(), 2);
        assert_eq!(run(&p, DEV_CHAR, R, 1, 3), 0);
        assert_eq!(run(&p, DEV_BLOCK, M, 8, 0), 0);
    }

    #[test]
    fn defaults_and_order() {
        // Engines' shape: deny all first, then allows; plus a later deny of one node.
        let p = program(&rules(&[
            (false, "a *:* rwm"),
            (true, "c *:* m"),
            (true, "c 1:3 rwm"),
            (true, "c 136:* rwm"),
            (true, "b 8:0 r"),
            (false, "c 1:3 w"),
        ]));
        assert_eq!(run(&p, DEV_CHAR, R, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, W, 1, 3), 0, "the later deny of w wins");
        assert_eq!(run(&p, DEV_CHAR, R | W, 1, 3), 0, "rw open needs w too");
        assert_eq!(run(&p, DEV_CHAR, M, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, R | W, 136, 7), 1);
        assert_eq!(run(&p, DEV_CHAR, M, 4095, 1), 1, "mknod of any char node");
        assert_eq!(run(&p, DEV_CHAR, R, 4095, 1), 0);
        assert_eq!(run(&p, DEV_BLOCK, R, 8, 0), 1);
        assert_eq!(
            run(&p, DEV_BLOCK, R | W, 8, 0),
            0,
            "b 8:0 r does not cover rw"
        );
        assert_eq!(run(&p, DEV_BLOCK, M, 8, 0), 0, "no m for block nodes");
        // The catch-all deny ends the program: nothing after it is emitted.
        assert_eq!(p.last().unwrap().code, op::EXIT);
        assert_eq!(p[p.len() - 2], insn(op::MOV64_K, 0, 0, 0, 0));
    }

    #[test]
    fn allow_all_then_deny_one() {
        let p = program(&rules(&[(true, "a *:* rwm"), (false, "b *:* rwm")]));
        assert_eq!(run(&p, DEV_CHAR, R | W | M, 10, 200), 1);
        assert_eq!(run(&p, DEV_BLOCK, R, 8, 1), 0);
        // An allow-everything rule last: a single block, no default.
        let p = program(&rules(&[(false, "c 1:3 rwm"), (true, "a *:* rwm")]));
        assert_eq!(p.len(), 2);
        assert_eq!(run(&p, DEV_CHAR, R, 1, 3), 1, "the last rule wins");
    }

    #[test]
    fn shape_of_one_rule() {
        let p = program(&rules(&[(true, "c 1:5 r")]));
        assert_eq!(
            p,
            [
                insn(op::MOV64_K, 2, 0, 0, 0),
                insn(op::LDX_W, 3, 1, 0, 0),
                insn(op::AND32_K, 3, 0, 0, 0xffff),
                insn(op::XOR32_K, 3, 0, 0, DEV_CHAR as i32),
                insn(op::OR64_X, 2, 3, 0, 0),
                insn(op::LDX_W, 3, 1, 0, 0),
                insn(op::RSH32_K, 3, 0, 0, 16),
                insn(op::AND32_K, 3, 0, 0, (W | M) as i32),
                insn(op::OR64_X, 2, 3, 0, 0),
                insn(op::LDX_W, 3, 1, 4, 0),
                insn(op::XOR32_K, 3, 0, 0, 1),
                insn(op::OR64_X, 2, 3, 0, 0),
                insn(op::LDX_W, 3, 1, 8, 0),
                insn(op::XOR32_K, 3, 0, 0, 5),
                insn(op::OR64_X, 2, 3, 0, 0),
                // One jump per rule, over `r0 = 1; exit` to the next block.
                insn(op::JNE_K, 2, 0, 2, 0),
                insn(op::MOV64_K, 0, 0, 0, 1),
                insn(op::EXIT, 0, 0, 0, 0),
                insn(op::MOV64_K, 0, 0, 0, 0),
                insn(op::EXIT, 0, 0, 0, 0),
            ]
        );
        let bytes = encode(&p[1..2]);
        assert_eq!(
            bytes,
            [0x61, 0x13, 0, 0, 0, 0, 0, 0],
            "r3 = *(u32 *)(r1 + 0)"
        );
    }

    #[test]
    fn one_jump_per_rule() {
        // The verifier keeps one pending branch per conditional jump; more than one per rule made
        // it refuse a few thousand rules.
        let list: Vec<Rule> = (0..10_000)
            .map(|i| Rule {
                allow: i % 2 == 0,
                typ: Some(DEV_CHAR),
                major: Some(i),
                minor: Some(i),
                access: R | W,
            })
            .collect();
        let p = program(&list);
        let jumps = p.iter().filter(|i| i.code == op::JNE_K).count();
        assert_eq!(jumps, list.len());
        assert_eq!(run(&p, DEV_CHAR, R, 4, 4), 1);
        assert_eq!(run(&p, DEV_CHAR, R, 5, 5), 0);
        assert_eq!(run(&p, DEV_CHAR, R, 5, 4), 0, "no rule: denied");
        assert_eq!(run(&p, DEV_CHAR, M, 4, 4), 0, "m not in the rule");
    }

    #[test]
    fn deny_matches_any_requested_bit() {
        let p = program(&rules(&[(true, "a *:* rwm"), (false, "c 1:3 w")]));
        assert_eq!(run(&p, DEV_CHAR, R, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, W, 1, 3), 0);
        assert_eq!(run(&p, DEV_CHAR, R | W, 1, 3), 0);
        assert_eq!(run(&p, DEV_CHAR, R | M, 1, 3), 1);
        assert_eq!(run(&p, DEV_BLOCK, W, 1, 3), 1, "other type");
        assert_eq!(run(&p, DEV_CHAR, W, 1, 4), 1, "other minor");
    }

    #[test]
    fn bad_rules() {
        for bad in [
            "x 1:3 rwm",
            "c 1:3 rx",
            "c 1:3",
            "c a:3 r",
            "c 1-3 r",
            "c 1:3 ",
            "c 99999999999:1 r",
        ] {
            let e = parse_rule(true, bad).unwrap_err().to_string();
            assert!(e.contains("device rule"), "{bad}: {e}");
        }
    }
}
