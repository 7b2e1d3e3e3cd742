//! Envelope encryption for tenant secrets.
//!
//! Each tenant has a 256-bit [`DataKey`] that seals its secret values with
//! AES-256-GCM. The data key is stored only wrapped ([`WrappedKey`]) by one of the
//! operator's master keys ([`MasterKeyring`]); the first configured master key
//! wraps, every configured one can unwrap, so master keys rotate by prepending a new
//! key, re-wrapping, and later dropping the old one.
//!
//! Invariants:
//! - every ciphertext is `nonce (12) ++ sealed bytes ++ tag (16)`, with a fresh
//!   nonce from [`SystemRandom`] per seal;
//! - associated data binds a secret to its tenant, secret id and version, and a
//!   wrapped data key to its tenant and master key id, so ciphertexts cannot be
//!   moved between rows or tenants;
//! - key bytes and plaintexts live only in zeroize-on-drop containers and no type
//!   here prints them (`Debug` shows ids only), and [`CryptoError::Open`] never says
//!   which check failed.
//!
//! `ring` expands keys into schedules it does not zeroize; they are built per
//! operation and dropped right after it.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use uuid::Uuid;

/// Length in bytes of master and data keys (AES-256).
const KEY_LEN: usize = 32;
/// Length in bytes of the AES-GCM authentication tag.
const TAG_LEN: usize = 16;
/// Maximum length of a master key id.
const MAX_ID_LEN: usize = 64;
/// AAD prefix of a wrapped data key.
const DEK_AAD_PREFIX: &[u8] = b"trellis/dek/v1";
/// AAD prefix of a sealed secret value.
const SECRET_AAD_PREFIX: &[u8] = b"trellis/secret/v1";

/// Why a crypto operation failed. Deliberately generic: `Open` never says which part was wrong.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Decryption failed: tampering, wrong key, wrong binding or malformed input.
    #[error("could not decrypt")]
    Open,
    /// A wrapped key names a master key that is not configured.
    #[error("unknown master key id {0:?}")]
    UnknownMasterKey(String),
    /// The master key configuration or key file is unusable (never contains key bytes).
    #[error("invalid master key configuration: {0}")]
    Config(String),
    /// The system random number generator failed.
    #[error("random number generator failed")]
    Rng,
}

/// 256 bits of key material that is zeroized on drop and never printed.
type KeyBytes = SecretBox<[u8; KEY_LEN]>;

fn random_key() -> Result<KeyBytes, CryptoError> {
    let rng = SystemRandom::new();
    let mut result = Ok(());
    let key = KeyBytes::init_with_mut(|bytes| result = rng.fill(bytes));
    result.map_err(|_| CryptoError::Rng)?;
    Ok(key)
}

fn random_array<const N: usize>(rng: &SystemRandom) -> Result<[u8; N], CryptoError> {
    let mut bytes = [0u8; N];
    rng.fill(&mut bytes).map_err(|_| CryptoError::Rng)?;
    Ok(bytes)
}

fn aead_key(key: &KeyBytes) -> LessSafeKey {
    // Only fails for a wrong key length, which `KeyBytes` rules out.
    let unbound = UnboundKey::new(&AES_256_GCM, key.expose_secret())
        .expect("AES-256-GCM accepts a 32-byte key");
    LessSafeKey::new(unbound)
}

/// Seals `plaintext` under `key`: `nonce ++ ciphertext ++ tag`.
///
/// The plaintext is copied into the output buffer and encrypted in place; capacity is
/// reserved up front so no reallocation leaves a plaintext copy behind.
fn seal_bytes(key: &KeyBytes, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let rng = SystemRandom::new();
    let nonce: [u8; NONCE_LEN] = random_array(&rng)?;
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = aead_key(key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        // Only fails for inputs longer than GCM allows (~64 GiB).
        .map_err(|_| CryptoError::Open)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Opens `nonce ++ ciphertext ++ tag`; every failure is [`CryptoError::Open`].
fn open_bytes(
    key: &KeyBytes,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Open);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
    let mut buf = Zeroizing::new(rest.to_vec());
    let plain_len = aead_key(key)
        .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
        .map_err(|_| CryptoError::Open)?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

fn validate_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// One 256-bit master key with its id (id: 1..=64 chars of [A-Za-z0-9_.-]).
pub struct MasterKey {
    id: String,
    key: KeyBytes,
}

impl MasterKey {
    /// Generates a fresh random master key named `id`.
    pub fn generate(id: &str) -> Result<Self, CryptoError> {
        if !validate_id(id) {
            return Err(CryptoError::Config(format!(
                "master key id {id:?} must be 1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 _ . -"
            )));
        }
        Ok(Self {
            id: id.to_owned(),
            key: random_key()?,
        })
    }

    /// The key's id, stored next to every data key it wraps.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// The configured master keys; the first is active (used to wrap), all can unwrap.
pub struct MasterKeyring {
    keys: Vec<MasterKey>,
}

impl fmt::Debug for MasterKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeyring")
            .field("active", &self.active_id())
            .field(
                "ids",
                &self.keys.iter().map(MasterKey::id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl MasterKeyring {
    /// Parses `TRELLIS_MASTER_KEYS`: comma-separated `id:base64key` entries (standard
    /// base64, 32 bytes each, whitespace around entries ignored), the first active.
    ///
    /// Errors name the entry by position (and id, when it is a valid id) but never
    /// contain the key text.
    pub fn parse(spec: &str) -> Result<Self, CryptoError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(CryptoError::Config("no master keys configured".into()));
        }
        let mut keys = Vec::new();
        for (index, entry) in spec.split(',').enumerate() {
            let position = index + 1;
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(CryptoError::Config(format!("entry {position} is empty")));
            }
            // Without a `:` the entry may be a bare key: say nothing about its text.
            let Some((id, encoded)) = entry.split_once(':') else {
                return Err(CryptoError::Config(format!(
                    "entry {position} is not of the form id:base64key"
                )));
            };
            let id = id.trim();
            if !validate_id(id) {
                return Err(CryptoError::Config(format!(
                    "entry {position} has an invalid id (1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 _ . -)"
                )));
            }
            let decoded = Zeroizing::new(STANDARD.decode(encoded.trim()).map_err(|_| {
                CryptoError::Config(format!(
                    "entry {position} ({id:?}): key is not valid standard base64"
                ))
            })?);
            if decoded.len() != KEY_LEN {
                return Err(CryptoError::Config(format!(
                    "entry {position} ({id:?}): key must be {KEY_LEN} bytes, got {}",
                    decoded.len()
                )));
            }
            let key = KeyBytes::init_with_mut(|bytes| bytes.copy_from_slice(&decoded));
            keys.push(MasterKey {
                id: id.to_owned(),
                key,
            });
        }
        Self::from_keys(keys)
    }

    /// Renders a keyring back to the spec format (for writing the embedded default key file).
    pub fn to_spec(&self) -> SecretString {
        // id + ':' + base64 (44 chars) + ',' per key; reserved up front so the
        // buffer never reallocates and leaves key copies behind.
        let capacity = self.keys.iter().map(|k| k.id.len() + 46).sum();
        let mut spec = String::with_capacity(capacity);
        for (index, key) in self.keys.iter().enumerate() {
            if index > 0 {
                spec.push(',');
            }
            spec.push_str(&key.id);
            spec.push(':');
            STANDARD.encode_string(key.key.expose_secret(), &mut spec);
        }
        SecretString::from(spec)
    }

    /// Reads the key file at `path` (spec format) or, if missing, generates one key
    /// with id `local-<8 hex>` and writes it with mode 0600.
    ///
    /// The new file is written under a temporary name and hard-linked into place, so
    /// two processes starting together never overwrite each other nor read a
    /// half-written file; the loser reads the winner's file. On unix an existing file
    /// with any group or other permission bits is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        match read_key_file(path) {
            Err(LoadError::Missing) => {}
            Err(LoadError::Crypto(e)) => return Err(e),
            Ok(ring) => return Ok(ring),
        }
        let suffix = u32::from_be_bytes(random_array(&SystemRandom::new())?);
        let id = format!("local-{suffix:08x}");
        let ring = Self::from_keys(vec![MasterKey::generate(&id)?])?;
        match write_new_key_file(path, &ring) {
            Ok(()) => Ok(ring),
            // Another process created it first: use theirs.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => match read_key_file(path) {
                Ok(ring) => Ok(ring),
                Err(LoadError::Crypto(e)) => Err(e),
                Err(LoadError::Missing) => Err(CryptoError::Config(format!(
                    "master key file {} vanished while being created",
                    path.display()
                ))),
            },
            Err(e) => Err(CryptoError::Config(format!(
                "cannot create master key file {}: {e}",
                path.display()
            ))),
        }
    }

    /// Builds a keyring from keys; the first is active, ids must be unique.
    pub fn from_keys(keys: Vec<MasterKey>) -> Result<Self, CryptoError> {
        if keys.is_empty() {
            return Err(CryptoError::Config("no master keys configured".into()));
        }
        for (index, key) in keys.iter().enumerate() {
            if keys[..index].iter().any(|k| k.id == key.id) {
                return Err(CryptoError::Config(format!(
                    "entry {} has duplicate master key id {:?}",
                    index + 1,
                    key.id
                )));
            }
        }
        Ok(Self { keys })
    }

    /// Id of the active master key, the one [`Self::wrap`] uses.
    pub fn active_id(&self) -> &str {
        &self.active().id
    }

    /// Whether a master key with this id is configured.
    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Wraps a tenant data key under the active master key. AAD binds it to the tenant
    /// and the master key id: `b"trellis/dek/v1" ++ tenant uuid bytes ++ key id bytes`.
    pub fn wrap(&self, tenant_id: Uuid, key: &DataKey) -> Result<WrappedKey, CryptoError> {
        let master = self.active();
        let aad = dek_aad(tenant_id, &master.id);
        let ciphertext = seal_bytes(&master.key, &aad, key.key.expose_secret())?;
        Ok(WrappedKey {
            master_key_id: master.id.clone(),
            ciphertext,
        })
    }

    /// Unwraps with the key named by `wrapped.master_key_id`; unknown id =>
    /// [`CryptoError::UnknownMasterKey`]; anything else wrong => [`CryptoError::Open`].
    pub fn unwrap(&self, tenant_id: Uuid, wrapped: &WrappedKey) -> Result<DataKey, CryptoError> {
        let master = self
            .get(&wrapped.master_key_id)
            .ok_or_else(|| CryptoError::UnknownMasterKey(wrapped.master_key_id.clone()))?;
        let aad = dek_aad(tenant_id, &master.id);
        let plain = open_bytes(&master.key, &aad, &wrapped.ciphertext)?;
        if plain.len() != KEY_LEN {
            return Err(CryptoError::Open);
        }
        let key = KeyBytes::init_with_mut(|bytes| bytes.copy_from_slice(&plain));
        Ok(DataKey { key })
    }

    fn active(&self) -> &MasterKey {
        // `from_keys` guarantees at least one key.
        &self.keys[0]
    }

    fn get(&self, id: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

fn dek_aad(tenant_id: Uuid, master_key_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DEK_AAD_PREFIX.len() + 16 + master_key_id.len());
    aad.extend_from_slice(DEK_AAD_PREFIX);
    aad.extend_from_slice(tenant_id.as_bytes());
    aad.extend_from_slice(master_key_id.as_bytes());
    aad
}

enum LoadError {
    Missing,
    Crypto(CryptoError),
}

/// Reads and parses an existing key file, refusing loose permissions on unix.
fn read_key_file(path: &Path) -> Result<MasterKeyring, LoadError> {
    let config = |what: &str, e: &std::io::Error| {
        LoadError::Crypto(CryptoError::Config(format!(
            "cannot {what} master key file {}: {e}",
            path.display()
        )))
    };
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(LoadError::Missing),
        Err(e) => return Err(config("open", &e)),
    };
    // Checked on the open handle, so the file cannot be swapped after the check.
    let metadata = file.metadata().map_err(|e| config("inspect", &e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(LoadError::Crypto(CryptoError::Config(format!(
                "master key file {} is accessible to group or others (mode {mode:03o}); run chmod 600 on it",
                path.display()
            ))));
        }
    }
    // Sized up front so the buffer does not reallocate and leave key copies behind.
    let capacity = usize::try_from(metadata.len())
        .unwrap_or(0)
        .saturating_add(1);
    let mut text = Zeroizing::new(String::with_capacity(capacity));
    file.read_to_string(&mut text)
        .map_err(|e| config("read", &e))?;
    MasterKeyring::parse(&text).map_err(|e| match e {
        CryptoError::Config(msg) => LoadError::Crypto(CryptoError::Config(format!(
            "master key file {}: {msg}",
            path.display()
        ))),
        other => LoadError::Crypto(other),
    })
}

/// Writes `ring` to a fresh temporary file (mode 0600) and hard-links it to `path`;
/// fails with [`ErrorKind::AlreadyExists`] if `path` exists.
fn write_new_key_file(path: &Path, ring: &MasterKeyring) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".{}.tmp", Uuid::new_v4().simple()));
    let tmp_path = path.with_file_name(tmp_name);

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp_path).and_then(|mut file| {
        let mut contents = Zeroizing::new(ring.to_spec().expose_secret().as_bytes().to_vec());
        contents.push(b'\n');
        file.write_all(&contents)?;
        file.sync_all()
    });
    // `hard_link` refuses to replace an existing file, unlike `rename`.
    let linked = written.and_then(|()| std::fs::hard_link(&tmp_path, path));
    // Best effort: a leftover temp file holds a key nobody uses.
    let _ = std::fs::remove_file(&tmp_path);
    linked
}

/// A data key wrapped by a master key, as stored in the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// Id of the master key that wrapped this key.
    pub master_key_id: String,
    /// `12-byte nonce ++ sealed key ++ 16-byte tag`.
    pub ciphertext: Vec<u8>,
}

/// A tenant's 256-bit data key (plaintext only in memory).
pub struct DataKey {
    key: KeyBytes,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

impl DataKey {
    /// Generates a fresh random data key.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self { key: random_key()? })
    }

    /// Seals a secret value: fresh random 96-bit nonce from `SystemRandom`;
    /// output = `nonce ++ ciphertext ++ tag`.
    pub fn seal(
        &self,
        binding: &SecretBinding,
        plaintext: &SecretString,
    ) -> Result<Vec<u8>, CryptoError> {
        seal_bytes(
            &self.key,
            &binding.aad(),
            plaintext.expose_secret().as_bytes(),
        )
    }

    /// Opens a sealed value; any mismatch (bit flip anywhere, other binding, other key,
    /// too short, non-UTF-8 plaintext) => [`CryptoError::Open`].
    pub fn open(
        &self,
        binding: &SecretBinding,
        sealed: &[u8],
    ) -> Result<SecretString, CryptoError> {
        let plain = open_bytes(&self.key, &binding.aad(), sealed)?;
        let text = std::str::from_utf8(&plain).map_err(|_| CryptoError::Open)?;
        Ok(SecretString::from(text))
    }
}

/// What a secret ciphertext is bound to through the AEAD associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretBinding {
    /// Tenant owning the secret.
    pub tenant_id: Uuid,
    /// The secret's row id.
    pub secret_id: Uuid,
    /// The secret's version.
    pub version: i32,
}

impl SecretBinding {
    /// `b"trellis/secret/v1" ++ tenant (16) ++ secret (16) ++ version (i32 big-endian)`.
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(SECRET_AAD_PREFIX.len() + 16 + 16 + 4);
        aad.extend_from_slice(SECRET_AAD_PREFIX);
        aad.extend_from_slice(self.tenant_id.as_bytes());
        aad.extend_from_slice(self.secret_id.as_bytes());
        aad.extend_from_slice(&self.version.to_be_bytes());
        aad
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;

    use super::*;

    fn binding() -> SecretBinding {
        SecretBinding {
            tenant_id: Uuid::new_v4(),
            secret_id: Uuid::new_v4(),
            version: 1,
        }
    }

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    fn config_message(result: Result<MasterKeyring, CryptoError>) -> String {
        match result {
            Err(e @ CryptoError::Config(_)) => e.to_string(),
            Err(other) => panic!("expected a Config error, got {other:?}"),
            Ok(ring) => panic!("expected a Config error, got {ring:?}"),
        }
    }

    /// A unique directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let path = std::env::temp_dir().join(format!("trellis-crypto-{}", Uuid::new_v4()));
            std::fs::create_dir_all(&path).expect("create temp dir");
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn seal_uses_a_fresh_nonce_every_time() {
        let key = DataKey::generate().unwrap();
        let binding = binding();
        let plaintext = SecretString::from("the same secret every time");
        let mut nonces = HashSet::new();
        for _ in 0..10_000 {
            let sealed = key.seal(&binding, &plaintext).unwrap();
            let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().unwrap();
            nonces.insert(nonce);
            let opened = key.open(&binding, &sealed).unwrap();
            assert_eq!(opened.expose_secret(), plaintext.expose_secret());
        }
        assert_eq!(nonces.len(), 10_000);
    }

    #[test]
    fn any_bit_flip_fails_with_a_generic_error() {
        let key = DataKey::generate().unwrap();
        let binding = binding();
        let plaintext = SecretString::from("twenty byte secret!!");
        let sealed = key.seal(&binding, &plaintext).unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + 20 + TAG_LEN);
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut tampered = sealed.clone();
                tampered[byte] ^= 1 << bit;
                let err = key.open(&binding, &tampered).unwrap_err();
                assert!(matches!(err, CryptoError::Open), "byte {byte} bit {bit}");
                assert_eq!(err.to_string(), "could not decrypt");
            }
        }
        // Truncated and empty inputs fail the same way.
        for len in [0, NONCE_LEN, NONCE_LEN + TAG_LEN - 1, sealed.len() - 1] {
            let err = key.open(&binding, &sealed[..len]).unwrap_err();
            assert!(matches!(err, CryptoError::Open), "length {len}");
        }
        assert_eq!(
            key.open(&binding, &sealed).unwrap().expose_secret(),
            plaintext.expose_secret()
        );
    }

    #[test]
    fn ciphertext_is_bound_to_tenant_secret_version_and_key() {
        let key = DataKey::generate().unwrap();
        let binding = binding();
        let sealed = key.seal(&binding, &SecretString::from("s3cret")).unwrap();

        let other_secret = SecretBinding {
            secret_id: Uuid::new_v4(),
            ..binding
        };
        let other_version = SecretBinding {
            version: 2,
            ..binding
        };
        let other_tenant = SecretBinding {
            tenant_id: Uuid::new_v4(),
            ..binding
        };
        for wrong in [other_secret, other_version, other_tenant] {
            assert!(matches!(key.open(&wrong, &sealed), Err(CryptoError::Open)));
        }
        let other_key = DataKey::generate().unwrap();
        assert!(matches!(
            other_key.open(&binding, &sealed),
            Err(CryptoError::Open)
        ));
    }

    #[test]
    fn non_utf8_plaintext_fails_to_open() {
        let key = DataKey::generate().unwrap();
        let binding = binding();
        let sealed = seal_bytes(&key.key, &binding.aad(), &[0xff, 0xfe]).unwrap();
        assert!(matches!(
            key.open(&binding, &sealed),
            Err(CryptoError::Open)
        ));
    }

    #[test]
    fn wrap_unwrap_and_rotation() {
        let tenant = Uuid::new_v4();
        let binding = SecretBinding {
            tenant_id: tenant,
            ..binding()
        };
        let old = MasterKeyring::parse(&format!("old:{}", b64(&[7u8; 32]))).unwrap();
        let data_key = DataKey::generate().unwrap();
        let sealed = data_key
            .seal(&binding, &SecretString::from("value"))
            .unwrap();

        let wrapped = old.wrap(tenant, &data_key).unwrap();
        assert_eq!(wrapped.master_key_id, "old");
        assert_eq!(wrapped.ciphertext.len(), NONCE_LEN + KEY_LEN + TAG_LEN);
        let unwrapped = old.unwrap(tenant, &wrapped).unwrap();
        assert_eq!(
            unwrapped.open(&binding, &sealed).unwrap().expose_secret(),
            "value"
        );

        // A keyring without the id says so.
        let stranger =
            MasterKeyring::from_keys(vec![MasterKey::generate("other").unwrap()]).unwrap();
        match stranger.unwrap(tenant, &wrapped) {
            Err(CryptoError::UnknownMasterKey(id)) => assert_eq!(id, "old"),
            other => panic!("expected UnknownMasterKey, got {other:?}"),
        }

        // Moved to another tenant, or tampered with: generic failure.
        assert!(matches!(
            old.unwrap(Uuid::new_v4(), &wrapped),
            Err(CryptoError::Open)
        ));
        let mut tampered = wrapped.clone();
        tampered.ciphertext[NONCE_LEN] ^= 1;
        assert!(matches!(
            old.unwrap(tenant, &tampered),
            Err(CryptoError::Open)
        ));

        // Rotation: [new, old] unwraps the old wrapping and re-wraps under new.
        let rotated = MasterKeyring::from_keys(vec![
            MasterKey::generate("new").unwrap(),
            MasterKeyring::parse(&format!("old:{}", b64(&[7u8; 32])))
                .unwrap()
                .keys
                .remove(0),
        ])
        .unwrap();
        assert_eq!(rotated.active_id(), "new");
        assert!(rotated.contains("old") && rotated.contains("new"));
        let from_old = rotated.unwrap(tenant, &wrapped).unwrap();
        let rewrapped = rotated.wrap(tenant, &from_old).unwrap();
        assert_eq!(rewrapped.master_key_id, "new");
        let from_new = rotated.unwrap(tenant, &rewrapped).unwrap();
        let resealed = from_new
            .seal(&binding, &SecretString::from("again"))
            .unwrap();
        assert_eq!(
            data_key.open(&binding, &resealed).unwrap().expose_secret(),
            "again"
        );
        assert_eq!(
            from_new.open(&binding, &sealed).unwrap().expose_secret(),
            "value"
        );
        // The old-only keyring cannot read the new wrapping.
        assert!(matches!(
            old.unwrap(tenant, &rewrapped),
            Err(CryptoError::UnknownMasterKey(_))
        ));
    }

    #[test]
    fn parse_accepts_good_specs_and_never_echoes_keys() {
        let a = b64(&[1u8; 32]);
        let b = b64(&[2u8; 32]);
        let ring = MasterKeyring::parse(&format!("  primary:{a} ,\n legacy-1.x:{b}\n")).unwrap();
        assert_eq!(ring.active_id(), "primary");
        assert!(ring.contains("legacy-1.x"));
        assert!(!ring.contains("primary:"));
        assert_eq!(
            ring.to_spec().expose_secret(),
            format!("primary:{a},legacy-1.x:{b}")
        );
        let again = MasterKeyring::parse(ring.to_spec().expose_secret()).unwrap();
        assert_eq!(again.active_id(), "primary");

        let short = b64(&[3u8; 16]);
        let bad_b64 = format!("{}!", &a[..a.len() - 1]);
        let cases = [
            (format!("k1:{a},k1:{b}"), "duplicate"),
            (format!("k1:{a},k2:{bad_b64}"), "entry 2 (\"k2\")"),
            (format!("k1:{short}"), "32 bytes"),
            (a.clone(), "entry 1"),
            (format!("bad id:{a}"), "invalid id"),
            (format!("k1:{a},,k2:{b}"), "entry 2 is empty"),
            (String::new(), "no master keys"),
            ("  \n ".to_owned(), "no master keys"),
        ];
        let key_texts = [a, b, short, bad_b64];
        for (spec, expected) in cases {
            let message = config_message(MasterKeyring::parse(&spec));
            assert!(message.contains(expected), "{spec:?}: {message}");
            for key_text in &key_texts {
                assert!(!message.contains(&key_text[..8]), "{message} leaks a key");
            }
        }
    }

    #[test]
    fn from_keys_rejects_empty_and_duplicates() {
        assert!(matches!(
            MasterKeyring::from_keys(Vec::new()),
            Err(CryptoError::Config(_))
        ));
        let keys = vec![
            MasterKey::generate("a").unwrap(),
            MasterKey::generate("a").unwrap(),
        ];
        assert!(matches!(
            MasterKeyring::from_keys(keys),
            Err(CryptoError::Config(_))
        ));
        assert!(MasterKey::generate("").is_err());
        assert!(MasterKey::generate(&"x".repeat(65)).is_err());
        assert!(MasterKey::generate("a:b").is_err());
        assert!(MasterKey::generate(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn load_or_create_writes_a_private_file_and_reads_it_back() {
        let dir = TempDir::new();
        let path = dir.0.join("keys").join("master.keys");
        let tenant = Uuid::new_v4();
        let binding = SecretBinding {
            tenant_id: tenant,
            ..binding()
        };

        let first = MasterKeyring::load_or_create(&path).unwrap();
        assert!(first.active_id().starts_with("local-"));
        assert_eq!(first.active_id().len(), "local-".len() + 8);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temporary files are left next to it.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );

        let data_key = DataKey::generate().unwrap();
        let wrapped = first.wrap(tenant, &data_key).unwrap();
        let sealed = data_key
            .seal(&binding, &SecretString::from("kept"))
            .unwrap();

        let second = MasterKeyring::load_or_create(&path).unwrap();
        assert_eq!(second.active_id(), first.active_id());
        let unwrapped = second.unwrap(tenant, &wrapped).unwrap();
        assert_eq!(
            unwrapped.open(&binding, &sealed).unwrap().expose_secret(),
            "kept"
        );
    }

    #[test]
    fn concurrent_load_or_create_agrees_on_one_key() {
        let dir = TempDir::new();
        let path = dir.0.join("master.keys");
        let ids: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        MasterKeyring::load_or_create(&path)
                            .unwrap()
                            .active_id()
                            .to_owned()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn load_or_create_refuses_a_readable_key_file() {
        use std::os::unix::fs::PermissionsExt as _;

        let dir = TempDir::new();
        let path = dir.0.join("master.keys");
        let key_text = b64(&[9u8; 32]);
        std::fs::write(&path, format!("k:{key_text}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let message = config_message(MasterKeyring::load_or_create(&path));
        assert!(message.contains("644"), "{message}");
        assert!(!message.contains(&key_text));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ring = MasterKeyring::load_or_create(&path).unwrap();
        assert_eq!(ring.active_id(), "k");
    }

    #[test]
    fn load_or_create_reports_a_corrupt_file_without_its_text() {
        let dir = TempDir::new();
        let path = dir.0.join("master.keys");
        let key_text = b64(&[5u8; 16]);
        std::fs::write(&path, format!("k:{key_text}")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let message = config_message(MasterKeyring::load_or_create(&path));
        assert!(
            message.contains("master.keys") && message.contains("32 bytes"),
            "{message}"
        );
        assert!(!message.contains(&key_text));
    }

    #[test]
    fn debug_output_shows_ids_only() {
        let bytes = [0xabu8; 32];
        let encoded = b64(&bytes);
        let ring = MasterKeyring::parse(&format!("visible-id:{encoded}")).unwrap();
        let data_key = DataKey::generate().unwrap();

        let outputs = [
            format!("{:?}", ring.keys[0]),
            format!("{:#?}", ring.keys[0]),
            format!("{ring:?}"),
            format!("{data_key:?}"),
        ];
        let raw_key = data_key.key.expose_secret();
        for output in &outputs {
            assert!(!output.contains(&encoded), "{output}");
            assert!(!output.contains("171"), "{output}"); // 0xab as a decimal byte
            assert!(!output.to_lowercase().contains("abab"), "{output}");
            assert!(!output.contains(&format!("{raw_key:?}")), "{output}");
            assert!(!output.contains(&b64(raw_key)), "{output}");
        }
        assert!(outputs[0].contains("visible-id") && outputs[0].contains("redacted"));
        assert!(outputs[2].contains("visible-id"));
        assert!(outputs[3].contains("redacted"));
    }
}
