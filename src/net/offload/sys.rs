//! The few bpf(2) commands the offload needs, as raw system calls: create a
//! map, read, write and delete its entries, load a program, and attach it
//! to an interface with a BPF link (BPF_LINK_CREATE, Linux 5.9+). A link
//! lives as long as its file descriptor: when turnd exits or crashes the
//! kernel closes it and the program is detached. Nothing is pinned.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

pub const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

/// `union bpf_attr`, as bytes: every command's fields sit at fixed offsets
/// and the kernel requires the rest to be zero.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Attr([0; 128])
    }
    fn u32(&mut self, offset: usize, v: u32) -> &mut Self {
        self.0[offset..offset + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, offset: usize, v: u64) -> &mut Self {
        self.0[offset..offset + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn name(&mut self, offset: usize, name: &str) -> &mut Self {
        let n = name.len().min(15);
        self.0[offset..offset + n].copy_from_slice(&name.as_bytes()[..n]);
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised bpf_attr of the size passed;
    // pointers inside it point at buffers the caller keeps alive.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd(r: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel returned a new file descriptor that nobody owns.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

/// BPF_MAP_CREATE.
pub fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, map_type)
        .u32(4, key_size)
        .u32(8, value_size)
        .u32(12, max_entries)
        .name(28, name);
    bpf(BPF_MAP_CREATE, &mut a).map(fd)
}

fn elem(map: &OwnedFd, key: &[u8], value: u64, flags: u64) -> Attr {
    let mut a = Attr::new();
    a.u32(0, map.as_raw_fd() as u32)
        .u64(8, key.as_ptr() as u64)
        .u64(16, value)
        .u64(24, flags);
    a
}

/// BPF_MAP_UPDATE_ELEM (BPF_ANY).
pub fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    bpf(
        BPF_MAP_UPDATE_ELEM,
        &mut elem(map, key, value.as_ptr() as u64, 0),
    )
    .map(drop)
}

/// BPF_MAP_DELETE_ELEM; a missing key is not an error.
pub fn map_delete(map: &OwnedFd, key: &[u8]) -> io::Result<()> {
    match bpf(BPF_MAP_DELETE_ELEM, &mut elem(map, key, 0, 0)) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r.map(drop),
    }
}

/// BPF_MAP_LOOKUP_ELEM into `value` (for per-CPU maps: one slot per
/// possible CPU, each rounded up to 8 bytes).
pub fn map_lookup(map: &OwnedFd, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
    match bpf(
        BPF_MAP_LOOKUP_ELEM,
        &mut elem(map, key, value.as_mut_ptr() as u64, 0),
    ) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// BPF_PROG_LOAD of an XDP program; on failure the verifier's log is in
/// the error.
pub fn prog_load(insns: &[u8], license: &str, name: &str) -> io::Result<OwnedFd> {
    let license = CString::new(license).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut log = vec![0u8; 64 * 1024];
    let mut a = Attr::new();
    a.u32(0, BPF_PROG_TYPE_XDP)
        .u32(4, (insns.len() / 8) as u32)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(24, 1)
        .u32(28, log.len() as u32)
        .u64(32, log.as_mut_ptr() as u64)
        .name(48, name)
        .u32(68, BPF_XDP);
    bpf(BPF_PROG_LOAD, &mut a).map(fd).map_err(|e| {
        let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(&log[..end]);
        let tail: String = text.lines().rev().take(6).collect::<Vec<_>>().join(" | ");
        io::Error::new(e.kind(), format!("{e}; verifier: {tail}"))
    })
}

/// BPF_LINK_CREATE for XDP on `ifindex`; `flags` 0 lets the kernel use the
/// driver's native XDP where it has one and generic XDP otherwise. Fails
/// with EBUSY when another XDP program is attached to the interface.
pub fn xdp_link(prog: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, prog.as_raw_fd() as u32)
        .u32(4, ifindex)
        .u32(8, BPF_XDP)
        .u32(12, flags);
    bpf(BPF_LINK_CREATE, &mut a).map(fd)
}

/// The interface index of `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `c` is a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// How many CPUs the kernel may use (the slot count of per-CPU maps).
pub fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut n = 0;
    for part in text.trim().split(',') {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "cpu/possible");
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let lo: usize = lo.parse().map_err(|_| bad())?;
        let hi: usize = hi.parse().map_err(|_| bad())?;
        n = n.max(hi + 1).max(lo + 1);
    }
    Ok(n)
}
