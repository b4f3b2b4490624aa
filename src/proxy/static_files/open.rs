//! Opening a file below a base directory so that nothing outside it can
//! ever be opened: not through `..`, not through a symlink anywhere in the
//! path, not through `/proc` magic links.
//!
//! The primary mechanism is Linux `openat2(2)` (5.6+) relative to a
//! directory fd of the base, with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`:
//! the kernel refuses, during the one path walk that also opens the file,
//! any step that leaves the base. There is no window between a check and
//! the open for an attacker who can rename or re-link things.
//!
//! `RESOLVE_BENEATH` also refuses *absolute* symlinks, even those pointing
//! back inside the base (`/srv/www/img -> /srv/www/v2/img`, common with
//! deploy tools). Those get a second chance: the path is canonicalized, the
//! result must lie under the canonical base, and it is opened with
//! `RESOLVE_NO_SYMLINKS`, so what was checked is what gets opened.
//!
//! Where `openat2` is missing (ENOSYS on kernels before 5.6, or a seccomp
//! filter answering EPERM), the canonicalize-and-prefix-check is the only
//! mechanism; the final open uses `O_NOFOLLOW`, which protects the last
//! component but leaves a race on the directories above it. That is the
//! best plain POSIX offers, and it is logged once.
//!
//! Every open is `O_NONBLOCK`: opening a FIFO someone left in the web root
//! must not park a blocking thread until a writer shows up (nginx does the
//! same). Callers check the file type from `fstat` and serve regular files
//! only.

use std::ffi::CString;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use http::StatusCode;

use super::rel_path::RelPath;

/// An open handle on a site's base directory (`root` or `alias`).
#[derive(Debug)]
pub(crate) struct BaseDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl BaseDir {
    /// Opens the base directory. Symlinks in the configured path itself are
    /// followed: the operator wrote it, and `root /srv/current` pointing at
    /// a release directory is a normal deployment.
    pub fn open(path: &Path) -> Result<BaseDir, OpenError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)?;
        Ok(BaseDir {
            fd: file.into(),
            path: path.to_path_buf(),
        })
    }
}

/// A file (or directory) opened below a base, with its `fstat` metadata.
#[derive(Debug)]
pub(crate) struct Opened {
    pub file: File,
    pub meta: Metadata,
}

impl Opened {
    pub fn is_dir(&self) -> bool {
        self.meta.is_dir()
    }

    pub fn is_regular(&self) -> bool {
        self.meta.is_file()
    }
}

/// Why a path could not be opened, in the terms a response needs.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// ENOENT, ENOTDIR, ENAMETOOLONG: 404. Also ENXIO and ENODEV, what
    /// `open` says for a socket or a device without a driver: no file
    /// that could be served is there.
    NotFound,
    /// EACCES, EPERM, and every refusal to leave the base (EXDEV from
    /// `RESOLVE_BENEATH`, ELOOP from `RESOLVE_NO_MAGICLINKS` or a symlink
    /// loop, a canonical path outside the base): 403, as nginx answers
    /// with `disable_symlinks`.
    Forbidden,
    /// Anything else (EMFILE, EIO...): 500.
    Io(io::Error),
}

impl OpenError {
    pub fn status(&self) -> StatusCode {
        match self {
            OpenError::NotFound => StatusCode::NOT_FOUND,
            OpenError::Forbidden => StatusCode::FORBIDDEN,
            OpenError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(
                libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG | libc::ENXIO | libc::ENODEV,
            ) => OpenError::NotFound,
            Some(libc::EACCES | libc::EPERM | libc::EXDEV | libc::ELOOP) => OpenError::Forbidden,
            _ => OpenError::Io(e),
        }
    }
}

/// How paths are kept below the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Confinement {
    /// `openat2` with `RESOLVE_BENEATH`, canonical check for absolute links.
    Openat2,
    /// Canonicalize and prefix-check only (no `openat2`).
    Canonical,
}

impl Confinement {
    /// The best mechanism this kernel offers, probed once.
    pub fn detect() -> Confinement {
        static DETECTED: OnceLock<Confinement> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let root = c"/";
            match openat2(libc::AT_FDCWD, root, libc::O_PATH | libc::O_CLOEXEC, 0) {
                Ok(_) => Confinement::Openat2,
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "openat2(2) unavailable; static files fall back to canonicalize-and-check, \
                         which cannot rule out a symlink race in parent directories"
                    );
                    Confinement::Canonical
                }
            }
        })
    }
}

/// Opens `rel` below `base`, refusing anything that resolves outside it.
pub(crate) fn open_beneath(
    base: &BaseDir,
    rel: &RelPath,
    how: Confinement,
) -> Result<Opened, OpenError> {
    let name = CString::new(rel.as_fs_str()).map_err(|_| OpenError::NotFound)?;
    let fd = match how {
        Confinement::Openat2 => {
            let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
            match openat2(base.fd.as_raw_fd(), &name, OPEN_FLAGS, resolve) {
                // EXDEV: the walk would leave the base, or met an absolute
                // symlink. Only the latter can be legitimate; the
                // canonical check tells them apart.
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => open_canonical(base, rel, how)?,
                other => other?,
            }
        }
        Confinement::Canonical => open_canonical(base, rel, how)?,
    };
    let file = File::from(fd);
    let meta = file.metadata()?;
    Ok(Opened { file, meta })
}

/// Read-only, no controlling tty, and never block in `open` (FIFOs).
const OPEN_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;

/// Canonicalizes `base/rel`, checks that it lies under the canonical base,
/// and opens exactly that path without following any symlink.
fn open_canonical(base: &BaseDir, rel: &RelPath, how: Confinement) -> Result<OwnedFd, OpenError> {
    let canonical = std::fs::canonicalize(rel.under(&base.path))?;
    let canonical_base = std::fs::canonicalize(&base.path)?;
    if !canonical.starts_with(&canonical_base) {
        return Err(OpenError::Forbidden);
    }
    let name = CString::new(canonical.into_os_string().into_encoded_bytes())
        .map_err(|_| OpenError::NotFound)?;
    let fd = match how {
        // Race-free: the path just checked has no symlink left in it, and
        // RESOLVE_NO_SYMLINKS fails the open if one appeared since.
        Confinement::Openat2 => {
            let resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
            openat2(libc::AT_FDCWD, &name, OPEN_FLAGS, resolve)?
        }
        Confinement::Canonical => {
            // SAFETY: `name` is a valid NUL-terminated string that outlives
            // the call; `open` does not retain the pointer.
            let fd = unsafe { libc::open(name.as_ptr(), OPEN_FLAGS | libc::O_NOFOLLOW) };
            if fd < 0 {
                return Err(io::Error::last_os_error().into());
            }
            // SAFETY: `fd` was just returned by a successful `open` and is
            // owned by nobody else.
            unsafe { OwnedFd::from_raw_fd(fd) }
        }
    };
    Ok(fd)
}

/// `struct open_how` from `<linux/openat2.h>` (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(2)`, retrying EINTR and the EAGAIN that `RESOLVE_BENEATH`
/// returns when a concurrent rename makes a `..` step unverifiable
/// ("The caller may choose to retry").
fn openat2(
    dirfd: RawFd,
    path: &std::ffi::CStr,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: flags as u64,
        mode: 0,
        resolve,
    };
    let mut attempts = 0;
    loop {
        // SAFETY: `path` is NUL-terminated and `how` is a properly laid
        // out `open_how` whose size is passed alongside; both outlive the
        // call, and the kernel does not retain either pointer.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if ret >= 0 {
            // SAFETY: a non-negative return is a new fd that we own.
            return Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) });
        }
        let err = io::Error::last_os_error();
        attempts += 1;
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) if attempts < 8 => continue,
            _ => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::symlink;

    use super::*;

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    /// tmp/root/{a.txt, sub/b.txt, in_link -> sub/b.txt, abs_in -> /…/root/sub,
    ///           out_link -> ../outside.txt, abs_out -> /…/outside.txt,
    ///           out_dir -> ../private, etc -> /etc, loop -> loop, magic -> /proc/self/root,
    ///           fifo}
    /// tmp/outside.txt, tmp/private/secret.txt
    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(tmp.path().join("private")).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("sub/b.txt"), "b").unwrap();
        let outside = tmp.path().join("outside.txt");
        std::fs::write(&outside, "SECRET").unwrap();
        std::fs::write(tmp.path().join("private/secret.txt"), "SECRET").unwrap();
        symlink("sub/b.txt", root.join("in_link")).unwrap();
        symlink(root.join("sub"), root.join("abs_in")).unwrap();
        symlink("../outside.txt", root.join("out_link")).unwrap();
        symlink(&outside, root.join("abs_out")).unwrap();
        symlink("../private", root.join("out_dir")).unwrap();
        symlink("/etc", root.join("etc")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        symlink("/proc/self/root", root.join("magic")).unwrap();
        let fifo = CString::new(root.join("fifo").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid path string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        Fixture {
            _tmp: tmp,
            root,
            outside,
        }
    }

    fn read(base: &BaseDir, path: &str, how: Confinement) -> Result<String, String> {
        let rel = RelPath::from_uri_path(path).ok_or("bad rel")?;
        match open_beneath(base, &rel, how) {
            Ok(mut o) if o.is_regular() => {
                let mut s = String::new();
                o.file.read_to_string(&mut s).unwrap();
                Ok(s)
            }
            Ok(o) if o.is_dir() => Ok("<dir>".into()),
            Ok(_) => Ok("<special>".into()),
            Err(e) => Err(format!("{:?}", e.status())),
        }
    }

    fn strategies() -> Vec<Confinement> {
        let mut s = vec![Confinement::Canonical];
        if Confinement::detect() == Confinement::Openat2 {
            s.push(Confinement::Openat2);
        }
        s
    }

    #[test]
    fn opens_what_is_inside() {
        let f = fixture();
        let base = BaseDir::open(&f.root).unwrap();
        for how in strategies() {
            assert_eq!(read(&base, "/a.txt", how), Ok("a".into()), "{how:?}");
            assert_eq!(read(&base, "/sub/b.txt", how), Ok("b".into()));
            assert_eq!(read(&base, "/in_link", how), Ok("b".into()));
            assert_eq!(read(&base, "/abs_in/b.txt", how), Ok("b".into()), "{how:?}");
            assert_eq!(read(&base, "/", how), Ok("<dir>".into()));
            assert_eq!(read(&base, "/sub", how), Ok("<dir>".into()));
            assert_eq!(read(&base, "/fifo", how), Ok("<special>".into()));
        }
    }

    #[test]
    fn refuses_what_leads_outside() {
        let f = fixture();
        let base = BaseDir::open(&f.root).unwrap();
        for how in strategies() {
            for path in [
                "/out_link",
                "/abs_out",
                "/out_dir/secret.txt",
                "/etc/passwd",
                "/etc/hostname",
                "/magic/etc/passwd",
            ] {
                assert_eq!(read(&base, path, how), Err("403".into()), "{path} {how:?}");
            }
            assert_eq!(read(&base, "/loop", how), Err("403".into()), "{how:?}");
            assert_eq!(read(&base, "/missing", how), Err("404".into()));
            assert_eq!(read(&base, "/a.txt/x", how), Err("404".into()));
        }
        assert!(f.outside.exists());
    }

    #[test]
    fn a_base_behind_a_symlink_is_followed() {
        let f = fixture();
        let link = f.root.parent().unwrap().join("current");
        symlink(&f.root, &link).unwrap();
        let base = BaseDir::open(&link).unwrap();
        for how in strategies() {
            assert_eq!(read(&base, "/a.txt", how), Ok("a".into()));
            assert_eq!(read(&base, "/abs_in/b.txt", how), Ok("b".into()));
            assert_eq!(read(&base, "/out_link", how), Err("403".into()));
        }
    }

    #[test]
    fn missing_base() {
        assert!(matches!(
            BaseDir::open(Path::new("/nonexistent/vigil")),
            Err(OpenError::NotFound)
        ));
    }
}
