//! The `chatmesh` binary's allocator, chosen per command when the process makes its first
//! allocation: mimalloc for the processes that carry the send path (`up`, `worker`,
//! `notifier`), glibc's malloc for everything else, and above all for the standalone
//! `gateway`, whose memory per idle connection is what it is sized by.
//!
//! Measured (docs/PERFORMANCE.md, "The allocator per command"): with mimalloc `chatmesh up`
//! spends less CPU per persisted message and has shorter tails under load, and even holds
//! less per idle connection than with glibc, while a standalone gateway holds 5-7% more per
//! connection and 10 MB more at rest. So one binary gets each where it is better.
//!
//! `CHATMESH_ALLOCATOR=system|mimalloc` overrides the choice (for A/B runs and for operators).
//!
//! The only `unsafe` of the workspace outside tests' reach: the `GlobalAlloc` impl and the
//! two raw reads below, each with its `SAFETY` note.
//!
//! The choice is made once, before the first allocation returns, from the process's own
//! command line (`/proc/self/cmdline`, read with plain syscalls into a stack buffer: nothing
//! may allocate while the allocator is being chosen) and that variable. It is a pure function
//! of both, so two threads racing to make it make the same one; after it no pointer can reach
//! the other allocator, since every call dispatches on the same, never changing, choice.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

use mimalloc::MiMalloc;

const UNDECIDED: u8 = 0;
const SYSTEM: u8 = 1;
const MIMALLOC: u8 = 2;

/// The variable that overrides the choice.
pub const ENV: &std::ffi::CStr = c"CHATMESH_ALLOCATOR";

/// The process's allocator: dispatches to glibc's malloc or mimalloc (module docs).
pub struct PerCommand {
    chosen: AtomicU8,
}

impl PerCommand {
    pub const fn new() -> Self {
        Self {
            chosen: AtomicU8::new(UNDECIDED),
        }
    }

    /// `"mimalloc"` or `"system"` (chosen now if nothing was allocated yet).
    pub fn name(&self) -> &'static str {
        match self.choice() {
            MIMALLOC => "mimalloc",
            _ => "system",
        }
    }

    #[inline]
    fn choice(&self) -> u8 {
        match self.chosen.load(Ordering::Relaxed) {
            UNDECIDED => {
                let c = choose_from_process();
                // A racing thread computed the same value: either store is the one.
                self.chosen.store(c, Ordering::Relaxed);
                c
            }
            c => c,
        }
    }
}

impl Default for PerCommand {
    fn default() -> Self {
        Self::new()
    }
}

#[allow(unsafe_code)]
// SAFETY: every call goes to the allocator of `choice()`, which is fixed before the first
// block is handed out and never changes, so each block is freed and resized by the allocator
// that made it; both allocators uphold `GlobalAlloc`'s contract themselves.
unsafe impl GlobalAlloc for PerCommand {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.choice() == MIMALLOC {
            unsafe { MiMalloc.alloc(layout) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if self.choice() == MIMALLOC {
            unsafe { MiMalloc.alloc_zeroed(layout) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.choice() == MIMALLOC {
            unsafe { MiMalloc.dealloc(ptr, layout) }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.choice() == MIMALLOC {
            unsafe { MiMalloc.realloc(ptr, layout, new_size) }
        } else {
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

/// The choice for this process: its command line and [`ENV`], read without allocating.
fn choose_from_process() -> u8 {
    let mut env = [0u8; 16];
    let env = read_env(&mut env);
    let mut cmdline = [0u8; 4096];
    let cmdline = read_cmdline(&mut cmdline);
    choose(cmdline, env)
}

/// The allocator for a command line (its arguments NUL-separated, as in `/proc/PID/cmdline`,
/// the program first) and the value of [`ENV`] if it is set: the variable when it names one,
/// else mimalloc for the send path's commands (`up`, `worker`, `notifier`), else the system's.
fn choose(cmdline: &[u8], env: Option<&[u8]>) -> u8 {
    match env {
        Some(b"mimalloc") => return MIMALLOC,
        Some(b"system") => return SYSTEM,
        _ => {}
    }
    match command(cmdline) {
        Some(b"up" | b"worker" | b"notifier") => MIMALLOC,
        _ => SYSTEM,
    }
}

/// The subcommand of a `chatmesh` command line: the first argument after the program that is
/// neither an option nor the value of one of the global options that take a value.
fn command(cmdline: &[u8]) -> Option<&[u8]> {
    let mut args = cmdline.split(|b| *b == 0).skip(1);
    while let Some(arg) = args.next() {
        match arg {
            b"--config" | b"-c" | b"--log-format" => {
                args.next();
            }
            a if a.starts_with(b"-") => {}
            a => return Some(a),
        }
    }
    None
}

/// Reads `/proc/self/cmdline` into `buf` (what fits; nothing if it cannot be read).
#[allow(unsafe_code)]
fn read_cmdline(buf: &mut [u8]) -> &[u8] {
    // SAFETY: a NUL-terminated path; `buf` is writable for its length; the fd is closed.
    unsafe {
        let fd = libc::open(
            c"/proc/self/cmdline".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return &[];
        }
        let mut len = 0usize;
        while len < buf.len() {
            let n = libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len);
            if n <= 0 {
                break;
            }
            len += n as usize;
        }
        libc::close(fd);
        &buf[..len]
    }
}

/// The value of [`ENV`] copied into `buf`, if set and short enough to name an allocator.
#[allow(unsafe_code)]
fn read_env(buf: &mut [u8]) -> Option<&[u8]> {
    // SAFETY: `getenv` of a NUL-terminated name returns NULL or a NUL-terminated string that
    // is only read here, before the environment could be changed by this process.
    unsafe {
        let value = libc::getenv(ENV.as_ptr());
        if value.is_null() {
            return None;
        }
        let bytes = std::ffi::CStr::from_ptr(value).to_bytes();
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Some(&buf[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for a in args {
            v.extend_from_slice(a.as_bytes());
            v.push(0);
        }
        v
    }

    #[test]
    fn the_send_path_commands_get_mimalloc_and_the_rest_the_system_allocator() {
        for (args, want) in [
            (&["chatmesh", "up"][..], MIMALLOC),
            (&["/usr/bin/chatmesh", "worker", "--standby"], MIMALLOC),
            (&["chatmesh", "notifier"], MIMALLOC),
            (&["chatmesh", "gateway"], SYSTEM),
            (&["chatmesh", "--config", "up", "gateway"], SYSTEM),
            (&["chatmesh", "-c", "/etc/c.toml", "worker"], MIMALLOC),
            (
                &["chatmesh", "--log-format", "json", "--check-config", "up"],
                MIMALLOC,
            ),
            (&["chatmesh", "--config=x.toml", "gateway"], SYSTEM),
            (&["chatmesh", "chat", "--room", "up"], SYSTEM),
            (&["chatmesh", "admin"], SYSTEM),
            (&["chatmesh"], SYSTEM),
            (&[][..], SYSTEM),
        ] {
            assert_eq!(choose(&cmd(args), None), want, "{args:?}");
        }
    }

    #[test]
    fn the_variable_overrides_the_command_and_anything_else_is_ignored() {
        let up = cmd(&["chatmesh", "up"]);
        let gateway = cmd(&["chatmesh", "gateway"]);
        assert_eq!(choose(&up, Some(b"system")), SYSTEM);
        assert_eq!(choose(&gateway, Some(b"mimalloc")), MIMALLOC);
        assert_eq!(choose(&gateway, Some(b"jemalloc")), SYSTEM);
        assert_eq!(choose(&up, Some(b"")), MIMALLOC);
    }

    #[test]
    fn this_process_reads_its_own_command_line() {
        // The test binary's arguments: its path first, whatever the harness passed after.
        let mut buf = [0u8; 4096];
        let line = read_cmdline(&mut buf);
        let program = line.split(|b| *b == 0).next().unwrap_or_default();
        let exe = std::env::args().next().unwrap();
        assert_eq!(program, exe.as_bytes());
    }
}
