//! A read-only tantivy `Directory` over the remote files of one index (`RemoteFile`): what
//! `Index::open` and the searcher read at open time comes from the hotcache; everything else
//! from the block cache, as `file` says.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, WatchCallback, WatchHandle, WritePtr,
};

use super::file::RemoteFile;

#[derive(Clone)]
pub struct RemoteDirectory {
    /// By tantivy's file name.
    files: Arc<HashMap<PathBuf, Arc<RemoteFile>>>,
}

impl std::fmt::Debug for RemoteDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteDirectory")
            .field("files", &self.files.len())
            .finish()
    }
}

fn read_only(path: &Path) -> Arc<io::Error> {
    Arc::new(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{}: a remote index is read-only", path.display()),
    ))
}

impl RemoteDirectory {
    pub fn new(files: HashMap<PathBuf, Arc<RemoteFile>>) -> RemoteDirectory {
        RemoteDirectory {
            files: Arc::new(files),
        }
    }

    pub fn files(&self) -> impl Iterator<Item = &Arc<RemoteFile>> {
        self.files.values()
    }
}

impl Directory for RemoteDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        match self.files.get(path) {
            Some(file) => Ok(file.clone()),
            None => Err(OpenReadError::FileDoesNotExist(path.to_path_buf())),
        }
    }

    /// Meta files are read whole at open: the hotcache holds them.
    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let file = self
            .files
            .get(path)
            .ok_or_else(|| OpenReadError::FileDoesNotExist(path.to_path_buf()))?;
        let len = tantivy::HasLen::len(file.as_ref()) as u64;
        file.kept(&(0..len))
            .map(|bytes| bytes.as_slice().to_vec())
            .ok_or_else(|| OpenReadError::IoError {
                io_error: Arc::new(super::file::plan_miss(file.path(), &(0..len))),
                filepath: path.to_path_buf(),
            })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        Ok(self.files.contains_key(path))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        Err(DeleteError::IoError {
            io_error: read_only(path),
            filepath: path.to_path_buf(),
        })
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        Err(OpenWriteError::IoError {
            io_error: read_only(path),
            filepath: path.to_path_buf(),
        })
    }

    fn atomic_write(&self, path: &Path, _data: &[u8]) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{}: a remote index is read-only", path.display()),
        ))
    }

    fn sync_directory(&self) -> io::Result<()> {
        Ok(())
    }

    fn watch(&self, _callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(WatchHandle::empty())
    }

    /// Nothing writes here: a reader's meta lock needs no file.
    fn acquire_lock(&self, _lock: &Lock) -> Result<DirectoryLock, LockError> {
        Ok(DirectoryLock::from(Box::new(())))
    }
}
