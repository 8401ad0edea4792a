"""What WeChat does to a callback body in safe mode, written here from its documentation and
not from channels/wechat/crypto.py, so a test of the engine's decryption can fail: AES-256-CBC
with the EncodingAESKey's 32 bytes, IV = its first 16, plaintext = 16 random bytes + length
(4 bytes big-endian) + XML + appid, PKCS#7 padded to 32-byte blocks."""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# 43 characters, as the 微信公众平台 generates them.
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OTHER_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
APPID = "wx5823bf96d3bd56c7"


def key_bytes(encoding_aes_key: str) -> bytes:
    return base64.b64decode(encoding_aes_key + "=")


def pad32(data: bytes) -> bytes:
    n = 32 - len(data) % 32
    return data + bytes([n]) * n


def aes_cbc(encoding_aes_key: str, padded: bytes) -> str:
    key = key_bytes(encoding_aes_key)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def frame(xml: bytes, appid: str = APPID) -> bytes:
    return os.urandom(16) + len(xml).to_bytes(4, "big") + xml + appid.encode()


def encrypt(xml: bytes, *, key: str = AES_KEY, appid: str = APPID) -> str:
    return aes_cbc(key, pad32(frame(xml, appid)))


def msg_signature(token: str, timestamp: str, nonce: str, encrypt_text: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt_text])).encode()).hexdigest()


def envelope(encrypt_text: str, plain_fields: str = "") -> bytes:
    """The body WeChat posts: `Encrypt` alone (safe mode), or beside the plaintext fields
    (compatible mode)."""
    return (
        f"<xml><ToUserName><![CDATA[gh_account]]></ToUserName>{plain_fields}"
        f"<Encrypt><![CDATA[{encrypt_text}]]></Encrypt></xml>"
    ).encode()
