"""Safe-mode decryption (channels/wechat/crypto.py) against bodies encrypted the way WeChat
documents it (tests/wechat_encrypt.py, written apart from the module under test)."""

from __future__ import annotations

import pytest
from wechat_encrypt import AES_KEY, APPID, OTHER_KEY, aes_cbc, encrypt, frame, msg_signature

from channels.wechat.crypto import BadAesKey, Refused, decrypt, msg_signature_ok, parse_aes_key

XML = "<xml><FromUserName><![CDATA[oUSER1]]></FromUserName><Event><![CDATA[subscribe]]></Event></xml>"
KEY = parse_aes_key(AES_KEY)


def test_a_body_encrypted_as_wechat_does_opens_to_its_xml() -> None:
    for xml in (XML.encode(), "<xml>孕产妇</xml>".encode(), b"<xml/>" * 40):  # any length, any text
        assert decrypt(KEY, encrypt(xml), APPID) == xml


def test_another_accounts_appid_is_refused() -> None:
    with pytest.raises(Refused) as caught:
        decrypt(KEY, encrypt(XML.encode(), appid="wx0000000000000000"), APPID)
    assert caught.value.reason == "wrong_appid"
    with pytest.raises(Refused):  # an engine without MCH_WECHAT_APPID trusts no body
        decrypt(KEY, encrypt(XML.encode()), "")


def test_a_body_encrypted_with_another_key_is_refused() -> None:
    for n in range(20):  # whatever the garbage decrypts to, it never passes as a body
        with pytest.raises(Refused):
            decrypt(KEY, encrypt(f"<xml>{n}</xml>".encode(), key=OTHER_KEY), APPID)


@pytest.mark.parametrize(
    "tail",
    [
        b"\x00" * 32,  # a pad byte of 0
        bytes([33]) * 48,  # longer than WeChat's 32-byte block
        b"\x01" * 29 + b"\x02\x03\x04",  # the last byte says 4, the bytes before disagree
    ],
)
def test_bad_padding_is_refused(tail: bytes) -> None:
    body = frame(XML.encode())
    body += b"x" * (-len(body) % 32)
    with pytest.raises(Refused) as caught:
        decrypt(KEY, aes_cbc(AES_KEY, body + tail), APPID)
    assert caught.value.reason == "bad_padding"


def test_a_length_beyond_the_body_and_broken_base64_are_refused() -> None:
    lying = bytes(16) + (10_000).to_bytes(4, "big") + XML.encode() + APPID.encode()
    lying += bytes([32 - len(lying) % 32]) * (32 - len(lying) % 32)
    with pytest.raises(Refused) as caught:
        decrypt(KEY, aes_cbc(AES_KEY, lying), APPID)
    assert caught.value.reason == "bad_length"
    for text in ("not base64!", "", "QUJD"):  # "QUJD" is 3 bytes: no AES block
        with pytest.raises(Refused):
            decrypt(KEY, text, APPID)


def test_msg_signature_covers_the_encrypted_body() -> None:
    body = encrypt(XML.encode())
    good = msg_signature("tok", "1741568400", "n1", body)
    assert msg_signature_ok("tok", good, "1741568400", "n1", body)
    assert not msg_signature_ok("tok", good, "1741568400", "n1", encrypt(XML.encode()))  # another body
    assert not msg_signature_ok("other", good, "1741568400", "n1", body)
    assert not msg_signature_ok("", good, "1741568400", "n1", body)


@pytest.mark.parametrize("text", [AES_KEY[:-1], AES_KEY + "H", "", "!" * 43])
def test_a_malformed_key_is_refused_without_being_quoted(text: str) -> None:
    with pytest.raises(BadAesKey) as caught:
        parse_aes_key(text)
    message = str(caught.value)
    assert "MCH_WECHAT_ENCODING_AES_KEY" in message
    assert not text or text not in message
    assert len(parse_aes_key(AES_KEY)) == 32
