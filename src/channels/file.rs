//! Provider `file`: each message becomes `<public id>.eml` in `config.dir`. For development and
//! for `pgcourier up`'s demo session. The file is written under a temporary name and renamed,
//! so a reader never sees half a message, and a second attempt of the same message replaces its
//! file instead of adding one.

use super::{email, Channel, Outbound, Receipt, SendError};
use async_trait::async_trait;
use std::path::PathBuf;

pub struct File {
    /// The folder the `.eml` files are written to (`config.dir`).
    dir: PathBuf,
}

impl File {
    pub fn new(config: &serde_json::Value) -> Result<File, SendError> {
        let dir = config
            .get("dir")
            .and_then(|d| d.as_str())
            .ok_or_else(|| SendError::permanent("provider file needs config.dir (the folder for .eml files)"))?;
        std::fs::create_dir_all(dir).map_err(|e| SendError::transient(format!("cannot create {dir}: {e}")))?;
        Ok(File { dir: PathBuf::from(dir) })
    }
}

#[async_trait]
impl Channel for File {
    async fn send(&self, msg: &Outbound) -> Result<Receipt, SendError> {
        let m = email::build(msg)?;
        let path = self.dir.join(format!("{}.eml", msg.public_id));
        let partial = self.dir.join(format!(".{}.eml.partial", msg.public_id));
        let write = async {
            tokio::fs::write(&partial, m.formatted()).await?;
            tokio::fs::rename(&partial, &path).await
        };
        write.await.map_err(|e| SendError::transient(format!("writing {} failed: {e}", path.display())))?;
        Ok(Receipt {
            external_id: msg.message_id.clone().or_else(|| Some(msg.public_id.to_string())),
            detail: None,
            answer: Default::default(),
        })
    }
}
