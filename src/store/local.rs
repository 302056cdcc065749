//! A local directory as a blob store: the embedded default and the quickstart's store.

use std::fs::{self, File};
use std::io::{self, ErrorKind};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    BlobStore, Expected, ObjectMeta, StoreError, StoreErrorKind, StoreResult, check_key,
    check_range,
};

/// Temporary files of in-flight writes carry this marker and are invisible to `list`.
const TEMP_MARKER: &str = ".tierdex-tmp-";

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    uri: String,
}

impl LocalStore {
    pub fn new(root: impl AsRef<Path>) -> StoreResult<LocalStore> {
        let root = root.as_ref();
        let display = root.display().to_string();
        fs::create_dir_all(root).map_err(|err| io_error("open", display.clone(), err))?;
        let root = root
            .canonicalize()
            .map_err(|err| io_error("open", display, err))?;
        let uri = format!("file://{}", root.display());
        Ok(LocalStore { root, uri })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn object(&self, key: &str) -> String {
        format!("{}/{key}", self.uri)
    }

    fn path(&self, op: &'static str, key: &str) -> StoreResult<PathBuf> {
        check_key(op, &self.uri, key)?;
        Ok(self.root.join(key))
    }

    async fn blocking<T: Send + 'static>(
        op: &'static str,
        object: String,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let object_for_panic = object.clone();
        match tokio::task::spawn_blocking(work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(io_error(op, object, err)),
            Err(join) => Err(StoreError::new(
                StoreErrorKind::Io,
                op,
                object_for_panic,
                format!("I/O task failed: {join}"),
            )),
        }
    }

    /// Writes through a temporary file and a rename, so readers never see a partial object.
    async fn write_atomically(
        &self,
        op: &'static str,
        key: &str,
        fill: impl FnOnce(&Path) -> io::Result<()> + Send + 'static,
    ) -> StoreResult<()> {
        let path = self.path(op, key)?;
        Self::blocking(op, self.object(key), move || {
            let parent = path.parent().expect("keys have a parent: the root");
            fs::create_dir_all(parent)?;
            let name = path
                .file_name()
                .expect("keys end in a name")
                .to_string_lossy();
            let temp = parent.join(format!(
                "{name}{TEMP_MARKER}{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let result = fill(&temp).and_then(|()| fs::rename(&temp, &path));
            if result.is_err() {
                let _ = fs::remove_file(&temp);
            }
            result
        })
        .await
    }
}

/// A local object's tag: its content's checksum and length (objects tagged are small).
fn content_tag(data: &[u8]) -> String {
    format!("{:08x}-{}", crc32c::crc32c(data), data.len())
}

fn io_error(op: &'static str, object: String, err: io::Error) -> StoreError {
    let kind = match err.kind() {
        ErrorKind::NotFound => StoreErrorKind::NotFound,
        ErrorKind::UnexpectedEof => StoreErrorKind::InvalidRange,
        _ => StoreErrorKind::Io,
    };
    let message = match kind {
        StoreErrorKind::NotFound => "no such object".to_string(),
        StoreErrorKind::InvalidRange => "range reaches past the end of the object".to_string(),
        _ => err.to_string(),
    };
    StoreError::new(kind, op, object, message).with_source(err)
}

#[async_trait]
impl BlobStore for LocalStore {
    fn uri(&self) -> &str {
        &self.uri
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let path = self.path("get_range", key)?;
        check_range("get_range", || self.object(key), &range)?;
        let len = (range.end - range.start) as usize;
        let start = range.start;
        Self::blocking("get_range", self.object(key), move || {
            let file = File::open(&path)?;
            let mut buffer = vec![0u8; len];
            file.read_exact_at(&mut buffer, start)?;
            Ok(Bytes::from(buffer))
        })
        .await
        .map_err(|err| err.with_range(range))
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let path = self.path("get", key)?;
        Self::blocking("get", self.object(key), move || {
            fs::read(&path).map(Bytes::from)
        })
        .await
    }

    async fn size(&self, key: &str) -> StoreResult<u64> {
        let path = self.path("size", key)?;
        Self::blocking("size", self.object(key), move || {
            let meta = fs::metadata(&path)?;
            if meta.is_file() {
                Ok(meta.len())
            } else {
                Err(io::Error::new(ErrorKind::NotFound, "not a file"))
            }
        })
        .await
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.write_atomically("put", key, move |temp| fs::write(temp, &data))
            .await
    }

    async fn put_file(&self, key: &str, local: &Path) -> StoreResult<()> {
        // A missing source is a local I/O problem, not a missing object.
        if let Err(err) = tokio::fs::metadata(local).await {
            return Err(StoreError::new(
                StoreErrorKind::Io,
                "put_file",
                self.object(key),
                format!("reading {}: {err}", local.display()),
            ));
        }
        let source = local.to_path_buf();
        self.write_atomically("put_file", key, move |temp| {
            fs::copy(&source, temp).map(|_| ())
        })
        .await
    }

    async fn get_tagged(&self, key: &str) -> StoreResult<Option<(Bytes, String)>> {
        match self.get(key).await {
            Ok(data) => {
                let tag = content_tag(&data);
                Ok(Some((data, tag)))
            }
            Err(err) if err.kind() == StoreErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Under an exclusive lock file beside the object (`<name>.lock`, created with
    /// `O_EXCL`): read, compare, write atomically, unlock. A lock left by a writer that died
    /// is reported, never broken: only a person can tell that no writer is running.
    async fn put_if(&self, key: &str, data: Bytes, expected: &Expected) -> StoreResult<()> {
        let path = self.path("put_if", key)?;
        let object = self.object(key);
        let expected = expected.clone();
        let conflict = |object: &str, message: String| {
            StoreError::new(
                StoreErrorKind::Conflict,
                "put_if",
                object.to_string(),
                message,
            )
        };
        let work = move || -> StoreResult<()> {
            let io = |err: io::Error| io_error("put_if", object.clone(), err);
            let parent = path.parent().expect("keys have a parent: the root");
            fs::create_dir_all(parent).map_err(io)?;
            let name = path
                .file_name()
                .expect("keys end in a name")
                .to_string_lossy();
            let lock = parent.join(format!("{name}.lock"));
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(_) => {}
                Err(err) if err.kind() == ErrorKind::AlreadyExists => {
                    return Err(conflict(
                        &object,
                        format!(
                            "another writer holds the lock {} (if no build is running, a \
                             writer died holding it: remove it)",
                            lock.display()
                        ),
                    ));
                }
                Err(err) => return Err(io(err)),
            }
            let result = (|| {
                let found = match fs::read(&path) {
                    Ok(current) => Some(content_tag(&current)),
                    Err(err) if err.kind() == ErrorKind::NotFound => None,
                    Err(err) => return Err(io(err)),
                };
                let holds = match (&expected, &found) {
                    (Expected::Absent, None) => true,
                    (Expected::Tag(tag), Some(found)) => tag == found,
                    _ => false,
                };
                if !holds {
                    return Err(conflict(
                        &object,
                        "the object changed since it was read (another writer)".into(),
                    ));
                }
                let temp = parent.join(format!("{name}{TEMP_MARKER}{}", std::process::id()));
                fs::write(&temp, &data)
                    .and_then(|()| fs::rename(&temp, &path))
                    .map_err(|err| {
                        let _ = fs::remove_file(&temp);
                        io(err)
                    })
            })();
            let _ = fs::remove_file(&lock);
            result
        };
        tokio::task::spawn_blocking(work).await.map_err(|join| {
            StoreError::new(
                StoreErrorKind::Io,
                "put_if",
                self.object(key),
                format!("I/O task failed: {join}"),
            )
        })?
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        let object = self.object(&prefix);
        Self::blocking("list", object, move || {
            // Walk only the directory the prefix lies in, then filter by the full prefix.
            let start_dir = match prefix.rfind('/') {
                Some(slash) => root.join(&prefix[..slash]),
                None => root.clone(),
            };
            let mut found = Vec::new();
            let mut pending = vec![start_dir];
            while let Some(dir) = pending.pop() {
                let entries = match fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(err) if err.kind() == ErrorKind::NotFound => continue,
                    Err(err) => return Err(err),
                };
                for entry in entries {
                    let entry = entry?;
                    let file_type = entry.file_type()?;
                    let path = entry.path();
                    if file_type.is_dir() {
                        pending.push(path);
                        continue;
                    }
                    let Ok(relative) = path.strip_prefix(&root) else {
                        continue;
                    };
                    let key = relative.to_string_lossy().replace('\\', "/");
                    if key.starts_with(&prefix) && !key.contains(TEMP_MARKER) {
                        found.push(ObjectMeta {
                            key,
                            size: entry.metadata()?.len(),
                        });
                    }
                }
            }
            found.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(found)
        })
        .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path("delete", key)?;
        let root = self.root.clone();
        Self::blocking("delete", self.object(key), move || {
            match fs::remove_file(&path) {
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                other => other?,
            }
            // Directories exist only for their files, as prefixes do in object storage: the
            // ones left empty go too (stops at the first that is not empty).
            let mut dir = path.parent();
            while let Some(parent) =
                dir.filter(|parent| *parent != root && parent.starts_with(&root))
            {
                if fs::remove_dir(parent).is_err() {
                    break;
                }
                dir = parent.parent();
            }
            Ok(())
        })
        .await
    }
}
