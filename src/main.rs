//! The `latchkey` binary: everything lives in the library; see `latchkey::cli`.

/// jemalloc instead of glibc's malloc: per-thread caches, no arena lock shared by the runtime's workers
/// (see `BENCHMARKS.md`, issue 13).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts: freed pages go back to the system at once (no decay), so
/// the 19 MiB an Argon2 hash uses does not stay with an idle server.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&'static std::ffi::c_char> =
    // SAFETY: a pointer to the first byte of a static, NUL-terminated string.
    Some(unsafe { &*c"dirty_decay_ms:0,muzzy_decay_ms:0".as_ptr() });

fn main() -> std::process::ExitCode {
    latchkey::cli::run()
}
