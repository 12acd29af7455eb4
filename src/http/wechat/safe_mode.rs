//! The Official Account's safe mode (`encrypt_type=aes`): the body's `<Encrypt>`
//! element is AES-256-CBC ciphertext, and `msg_signature` is the SHA-1 of the
//! sorted token, timestamp, nonce and that ciphertext, so unlike plaintext mode
//! the signature covers the message.
//!
//! Key: Base64 of `EncodingAESKey` + `=` (43 characters give 32 bytes); IV: the
//! key's first 16 bytes. Plaintext: 16 random bytes, the message length (4 bytes,
//! big-endian), the message, then the AppID, padded PKCS#7-style to a multiple of
//! **32** bytes. That padding (not the 16-byte PKCS#7 of the `block-padding`
//! crate, which refuses pad values above 16) is why unpadding is written here;
//! the cipher itself comes from the `aes` and `cbc` crates. Checked against
//! wechatpy's `WeChatCrypto` (see the tests).

use aes::Aes256;
use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

/// The key's decoder: the Official Account generates the 43 characters at random,
/// so the last one's unused bits are not zero (WeChat's own samples decode
/// leniently too).
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// WeChat pads to this many bytes.
const PAD_BLOCK: usize = 32;

/// Why a safe-mode message could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The configured key is not 43 characters of Base64 that decode to 32 bytes.
    #[error(
        "the EncodingAESKey must be the 43 characters the Official Account's server \
         configuration shows (Base64 for 32 bytes): {0}"
    )]
    Key(String),
    /// `<Encrypt>` is not Base64 of whole AES blocks.
    #[error("the Encrypt element is not Base64 of whole AES blocks: {0}")]
    Ciphertext(String),
    /// Decrypted, but the padding or length prefix is wrong: another key.
    #[error("the Encrypt element does not decrypt with the configured EncodingAESKey")]
    WrongKey,
    /// The message was encrypted for another Official Account.
    #[error("the message names AppID {found:?}, not the configured {expected:?}")]
    AppId {
        /// The configured AppID.
        expected: String,
        /// The AppID in the message.
        found: String,
    },
    /// The decrypted message is not UTF-8.
    #[error("the decrypted message is not UTF-8")]
    Utf8,
}

/// The EncodingAESKey, decoded.
#[derive(Clone)]
pub struct AesKey([u8; 32]);

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesKey(***)")
    }
}

impl AesKey {
    /// Decodes the 43-character EncodingAESKey.
    pub fn parse(encoding_aes_key: &str) -> Result<AesKey, Error> {
        let text = encoding_aes_key.trim();
        if text.len() != 43 {
            return Err(Error::Key(format!("it has {} characters", text.chars().count())));
        }
        let bytes =
            KEY_BASE64.decode(format!("{text}=")).map_err(|error| Error::Key(error.to_string()))?;
        let key: [u8; 32] =
            bytes.try_into().map_err(|_| Error::Key("it does not decode to 32 bytes".into()))?;
        Ok(AesKey(key))
    }

    fn iv(&self) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&self.0[..16]);
        iv
    }

    /// Opens the Base64 `<Encrypt>` payload and checks that it was sealed for
    /// `app_id`; returns the inner message (the plaintext-mode XML).
    pub fn open(&self, encrypt: &str, app_id: &str) -> Result<String, Error> {
        let mut data = STANDARD
            .decode(encrypt.trim())
            .map_err(|error| Error::Ciphertext(error.to_string()))?;
        if data.is_empty() || data.len() % 16 != 0 {
            return Err(Error::Ciphertext(format!("{} bytes", data.len())));
        }
        let plain = cbc::Decryptor::<Aes256>::new(&self.0.into(), &self.iv().into())
            .decrypt_padded_mut::<NoPadding>(&mut data)
            .map_err(|_| Error::WrongKey)?;
        let pad = usize::from(*plain.last().ok_or(Error::WrongKey)?);
        if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
            return Err(Error::WrongKey);
        }
        let content = plain.get(16..plain.len() - pad).ok_or(Error::WrongKey)?;
        let (length, rest) = content.split_at_checked(4).ok_or(Error::WrongKey)?;
        let length = u32::from_be_bytes(length.try_into().map_err(|_| Error::WrongKey)?) as usize;
        let (message, found) = rest.split_at_checked(length).ok_or(Error::WrongKey)?;
        if found != app_id.as_bytes() {
            return Err(Error::AppId {
                expected: app_id.to_owned(),
                found: String::from_utf8_lossy(found).into_owned(),
            });
        }
        String::from_utf8(message.to_vec()).map_err(|_| Error::Utf8)
    }

    /// Seals `message` for `app_id` as WeChat does, with the given 16 random
    /// bytes in front; returns the Base64 `<Encrypt>` payload. (The daemon only
    /// opens messages; sealing serves a sender such as a test's fake WeChat.)
    pub fn seal(&self, message: &str, app_id: &str, random: [u8; 16]) -> String {
        let mut plain = Vec::with_capacity(message.len() + app_id.len() + 20 + PAD_BLOCK);
        plain.extend_from_slice(&random);
        plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
        plain.extend_from_slice(message.as_bytes());
        plain.extend_from_slice(app_id.as_bytes());
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let length = plain.len();
        let sealed = cbc::Encryptor::<Aes256>::new(&self.0.into(), &self.iv().into())
            .encrypt_padded_mut::<NoPadding>(&mut plain, length)
            .expect("the plaintext is padded to whole blocks");
        STANDARD.encode(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APP_ID: &str = "wx5823bf96d3bd56c7";
    const MESSAGE: &str = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName>\
        <![CDATA[openid-harbin]]></FromUserName><CreateTime>1820887200</CreateTime><MsgType>\
        <![CDATA[event]]></MsgType><Event><![CDATA[unsubscribe]]></Event></xml>";
    /// `wechatpy.crypto.WeChatCrypto("cbtoken", KEY, APP_ID).encrypt_message(MESSAGE,
    /// "1234567890", 1820887200)` (wechatpy 1.8.18) with its random string fixed to
    /// `0123456789abcdef`.
    const WECHATPY: &str = "Q3stYC6hdFzMh9T8HCvyDLhXrVGtVJLOGCHbvaDClcw2BHzQ87KInr1M4iFc4bOBfMgh5HIQfJJTRh1lN59g17VB5/nWKI4GkPMSwCrqV2YpAa0NFlSzJ7Jz7PjRGlxyf0dUaKeYzE8BrtAXfLqqz7kpRvTKu4tVFnpzqBcVl7ieiBJM6dThXjbmFdgfTYE9RGOwkayu6NxpBpRzD3q6mS39VymDA2bqpeLxDr9I8WiMn4KOkmyNhkLqGzdLuhdIsnhH1XcjqVvR2KOQzPft7kLXspi7z1toc78MEcBed91wrxJIiQOVzn9dzOR79wG10whH84aUGYzLd2e3/0CICQ==";

    #[test]
    fn opens_and_seals_like_wechatpy() {
        let key = AesKey::parse(KEY).unwrap();
        assert_eq!(key.open(WECHATPY, APP_ID).unwrap(), MESSAGE);
        assert_eq!(key.seal(MESSAGE, APP_ID, *b"0123456789abcdef"), WECHATPY);
    }

    #[test]
    fn every_pad_length_round_trips() {
        let key = AesKey::parse(KEY).unwrap();
        for length in 0..70 {
            let message = "x".repeat(length);
            let sealed = key.seal(&message, APP_ID, [7; 16]);
            assert_eq!(key.open(&sealed, APP_ID).unwrap(), message, "length {length}");
        }
    }

    #[test]
    fn wrong_keys_app_ids_and_payloads_are_refused() {
        let key = AesKey::parse(KEY).unwrap();
        let other = AesKey::parse("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg").unwrap();
        assert!(matches!(other.open(WECHATPY, APP_ID), Err(Error::WrongKey | Error::AppId { .. })));
        assert_eq!(
            key.open(WECHATPY, "wx0000000000000000"),
            Err(Error::AppId { expected: "wx0000000000000000".into(), found: APP_ID.into() })
        );
        assert!(matches!(key.open("not base64!", APP_ID), Err(Error::Ciphertext(_))));
        assert!(matches!(key.open("AAAA", APP_ID), Err(Error::Ciphertext(_))));
        assert!(matches!(key.open("", APP_ID), Err(Error::Ciphertext(_))));
    }

    #[test]
    fn malformed_keys_say_what_is_expected() {
        let error = AesKey::parse("short").unwrap_err().to_string();
        assert!(error.contains("43 characters") && error.contains("it has 5"), "{error}");
        assert!(matches!(AesKey::parse(&"!".repeat(43)), Err(Error::Key(_))));
        assert_eq!(format!("{:?}", AesKey::parse(KEY).unwrap()), "AesKey(***)");
    }
}
