//! How Chromium is started: as which user, and with its sandbox.
//!
//! A renderer exploit runs with the browser's privileges. So Chromium never runs as root: a
//! worker running as root starts it through a wrapper that drops to an unprivileged render user
//! (`setpriv`, no supplementary groups, no capabilities), and Chromium's own sandbox (user
//! namespaces and seccomp) stays on unless `PGSHOT_CHROMIUM_SANDBOX=false` says the machine
//! cannot give it user namespaces. A worker that is not root starts Chromium as itself.

use std::path::{Path, PathBuf};

/// The default render user, made by scripts/setup.sh (`useradd --system pgshot-render`).
pub const DEFAULT_RENDER_USER: &str = "pgshot-render";

#[derive(Debug)]
pub struct Launcher {
    /// What chromiumoxide executes: Chromium itself, or the wrapper that drops privileges.
    pub executable: PathBuf,
    /// The (uid, gid) Chromium runs as when that is not the worker's own.
    pub render_as: Option<(u32, u32)>,
    pub sandbox: bool,
    /// The wrapper's private directory, removed with the launcher.
    wrapper_dir: Option<PathBuf>,
}

impl Launcher {
    /// `render_user`: whom to render as when the worker runs as root (default
    /// [`DEFAULT_RENDER_USER`], or `nobody` when that user does not exist).
    pub fn new(chromium: &Path, render_user: Option<&str>, sandbox: bool) -> Result<Launcher, String> {
        if !crate::browser::is_root() {
            return Ok(Launcher { executable: chromium.to_path_buf(), render_as: None, sandbox, wrapper_dir: None });
        }
        let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
        let (name, (uid, gid)) = match render_user {
            Some(name) => {
                (name, user_ids(&passwd, name).ok_or_else(|| format!("PGSHOT_RENDER_USER {name:?} does not exist"))?)
            }
            None => match user_ids(&passwd, DEFAULT_RENDER_USER) {
                Some(ids) => (DEFAULT_RENDER_USER, ids),
                None => {
                    tracing::warn!("no user {DEFAULT_RENDER_USER} (scripts/setup.sh makes it): rendering as nobody");
                    ("nobody", user_ids(&passwd, "nobody").ok_or("neither pgshot-render nor nobody exists")?)
                }
            },
        };
        if uid == 0 || gid == 0 {
            return Err(format!("the render user {name} must not be root (uid and gid 0)"));
        }
        let dir =
            std::env::temp_dir().join(format!("pgshot-launcher-{}-{}", std::process::id(), pgshot_job::new_job_id()));
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let executable = dir.join("chromium");
        std::fs::write(&executable, wrapper(chromium, uid, gid))
            .map_err(|e| format!("cannot write the wrapper: {e}"))?;
        std::fs::set_permissions(&executable, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| format!("cannot make the wrapper executable: {e}"))?;
        tracing::info!(user = name, uid, sandbox, "chromium renders as an unprivileged user");
        Ok(Launcher { executable, render_as: Some((uid, gid)), sandbox, wrapper_dir: Some(dir) })
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Some(dir) = &self.wrapper_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A shell script that runs Chromium as `uid`:`gid` with no groups and no capabilities, keeping
/// its own pid (exec), so that the worker watches and kills the browser itself.
fn wrapper(chromium: &Path, uid: u32, gid: u32) -> String {
    let quoted = format!("'{}'", chromium.display().to_string().replace('\'', "'\\''"));
    format!("#!/bin/sh\nexec setpriv --reuid={uid} --regid={gid} --clear-groups --inh-caps=-all -- {quoted} \"$@\"\n")
}

/// (uid, gid) of `name` in an /etc/passwd text.
fn user_ids(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        let _password = fields.next()?;
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_found_by_exact_name() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                      pgshot-render:x:998:997::/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(user_ids(passwd, "pgshot-render"), Some((998, 997)));
        assert_eq!(user_ids(passwd, "nobody"), Some((65534, 65534)));
        assert_eq!(user_ids(passwd, "pgshot"), None);
        assert_eq!(user_ids(passwd, "x"), None);
    }

    #[test]
    fn the_wrapper_quotes_the_path_and_keeps_every_argument() {
        let script = wrapper(Path::new("/opt/it's/chromium"), 998, 997);
        assert_eq!(
            script,
            "#!/bin/sh\nexec setpriv --reuid=998 --regid=997 --clear-groups --inh-caps=-all -- '/opt/it'\\''s/chromium' \"$@\"\n"
        );
    }
}
