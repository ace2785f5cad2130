//! Files and folders only their owner may read: the embedded store and the folder that
//! holds it and the environments' keys (`.airlock/`). Created private whatever the umask,
//! since the store holds every run's payload and journal, and sealed secrets beside the
//! keys that open them.

use std::path::Path;

/// The mode of a private file: read and write by its owner only.
pub const FILE_MODE: u32 = 0o600;
/// The mode of a private folder: its owner only may list, enter or change it.
pub const DIR_MODE: u32 = 0o700;

/// Creates `path` and any missing parent as private folders ([`DIR_MODE`]). A folder
/// that exists already is left as it is (`check` reports one others may read).
pub fn create_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(path)
}

/// Creates `path` as an empty private file ([`FILE_MODE`]) unless it exists; an existing
/// file is left as it is. SQLite then opens it, and gives its `-wal` and `-shm` files the
/// database file's permissions.
pub(crate) fn create_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}
