//! The derivation functions of table.md: tag, label key, label, pad, encryption.
//!
//! Every hash input is `I2OSP(len(DST), 2) || DST || fields`, where each field is fixed-length
//! or length-prefixed, so the encoding is injective and the inputs of different functions never
//! coincide. All intermediate digests that contain secret material are zeroized. The functions
//! are straight-line: no branch or index depends on secret bytes.

use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use crate::consts::{
    DST_LABEL_KEY, DST_LABEL_PAD, DST_TAG, LABEL_KEY_LEN, LABEL_LEN, OPRF_OUTPUT_LEN, TAG_LEN,
};
use crate::ids::{ClientId, KeyPeriodId};
use crate::label::{EncryptedLabel, Label};
use crate::perm::LabelPermutation;
use crate::secrets::{LabelKey, LabelMasterKey};
use crate::tag::Tag;

/// A SHA-512 hasher primed with `I2OSP(len(dst), 2) || dst`.
fn hasher(dst: &[u8]) -> Sha512 {
    let mut h = Sha512::new();
    h.update((dst.len() as u16).to_be_bytes());
    h.update(dst);
    h
}

fn finish(h: Sha512) -> Zeroizing<[u8; 64]> {
    Zeroizing::new(h.finalize().into())
}

/// Derives the public tag and the secret label key of the entry for OPRF output `o_y`:
///
/// ```text
/// tag       = SHA-512(I2OSP(12,2) || "nayose/2 tag"       || o_y)[0..9]
/// label_key = SHA-512(I2OSP(18,2) || "nayose/2 label key" || o_y)[0..32]
/// ```
pub fn derive_entry_secrets(o_y: &[u8; OPRF_OUTPUT_LEN]) -> (Tag, LabelKey) {
    let mut h = hasher(DST_TAG);
    h.update(o_y);
    let d = finish(h);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&d[..TAG_LEN]);

    let mut h = hasher(DST_LABEL_KEY);
    h.update(o_y);
    let d = finish(h);
    let mut key = Zeroizing::new([0u8; LABEL_KEY_LEN]);
    key.copy_from_slice(&d[..LABEL_KEY_LEN]);
    (Tag(tag), LabelKey::from_bytes(&key))
}

/// The label of the person with `serial` for client `client` (table.md §3.2): one call of a
/// [`LabelPermutation`]; callers labelling many persons build the permutation once.
pub fn label_for(master: &LabelMasterKey, client: &ClientId, serial: u32) -> Label {
    LabelPermutation::new(master, client).label(serial)
}

/// The one-time pad for the entry with `tag` and `key` at `pad_epoch`, made for `client` in
/// `key_period`:
///
/// ```text
/// pad = SHA-512(I2OSP(18,2) || "nayose/2 label pad" || label_key
///               || I2OSP(len(client),2) || client || key_period_id (16)
///               || I2OSP(pad_epoch, 4) || tag)[0..4]
/// ```
///
/// The pad epoch is the epoch whose state the ciphertext carries: the base's epoch for an entry
/// of a base, the delta's epoch for an upsert. An entry's label is fixed within one epoch, so a
/// pad never encrypts two different labels (table.md §13.2).
///
/// Exposed for test vectors; callers normally use [`encrypt_label`] / [`decrypt_label`].
pub fn label_pad(
    key: &LabelKey,
    client: &ClientId,
    key_period: KeyPeriodId,
    version: u32,
    tag: &Tag,
) -> Zeroizing<[u8; LABEL_LEN]> {
    let mut h = hasher(DST_LABEL_PAD);
    h.update(key.as_bytes());
    h.update((client.as_bytes().len() as u16).to_be_bytes());
    h.update(client.as_bytes());
    h.update(key_period.as_bytes());
    h.update(version.to_be_bytes());
    h.update(tag.as_bytes());
    let d = finish(h);
    let mut pad = Zeroizing::new([0u8; LABEL_LEN]);
    pad.copy_from_slice(&d[..LABEL_LEN]);
    pad
}

/// Encrypts `label` for `client` at `version` (the pad epoch) in `key_period` under the entry's
/// key: `label XOR pad`.
pub fn encrypt_label(
    key: &LabelKey,
    client: &ClientId,
    key_period: KeyPeriodId,
    version: u32,
    tag: &Tag,
    label: &Label,
) -> EncryptedLabel {
    let pad = label_pad(key, client, key_period, version, tag);
    let mut c = [0u8; LABEL_LEN];
    for i in 0..LABEL_LEN {
        c[i] = label.0[i] ^ pad[i];
    }
    EncryptedLabel(c)
}

/// Decrypts an encrypted label: `ciphertext XOR pad`. There is no integrity check (the pad is
/// a one-time pad; integrity against the network comes from TLS, and the server could choose
/// any label anyway; see security.md).
pub fn decrypt_label(
    key: &LabelKey,
    client: &ClientId,
    key_period: KeyPeriodId,
    version: u32,
    tag: &Tag,
    encrypted: &EncryptedLabel,
) -> Label {
    let pad = label_pad(key, client, key_period, version, tag);
    let mut l = [0u8; LABEL_LEN];
    for i in 0..LABEL_LEN {
        l[i] = encrypted.0[i] ^ pad[i];
    }
    Label(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(b: u8) -> [u8; 64] {
        [b; 64]
    }

    #[test]
    fn roundtrip_and_binding() {
        let master = LabelMasterKey::from_bytes(&[7; 32]).unwrap();
        let a = ClientId::new("client-a").unwrap();
        let b = ClientId::new("client-b").unwrap();
        let kp = |n, b| KeyPeriodId::new(n, &[b; 32]);
        let (tag, key) = derive_entry_secrets(&o(1));
        let la = label_for(&master, &a, 17);
        let e = encrypt_label(&key, &a, kp(5, 1), 9, &tag, &la);
        assert_eq!(decrypt_label(&key, &a, kp(5, 1), 9, &tag, &e), la);
        // A different client, key period, pad epoch, tag or key opens a different label.
        assert_ne!(decrypt_label(&key, &b, kp(5, 1), 9, &tag, &e), la);
        assert_ne!(decrypt_label(&key, &a, kp(6, 1), 9, &tag, &e), la);
        assert_ne!(decrypt_label(&key, &a, kp(5, 2), 9, &tag, &e), la);
        assert_ne!(decrypt_label(&key, &a, kp(5, 1), 10, &tag, &e), la);
        let (tag2, key2) = derive_entry_secrets(&o(2));
        assert_ne!(decrypt_label(&key, &a, kp(5, 1), 9, &tag2, &e), la);
        assert_ne!(decrypt_label(&key2, &a, kp(5, 1), 9, &tag, &e), la);
        // Labels: per client, per serial.
        assert_ne!(label_for(&master, &b, 17), la);
        assert_ne!(label_for(&master, &a, 18), la);
        assert_eq!(label_for(&master, &a, 17), la);
    }
}
