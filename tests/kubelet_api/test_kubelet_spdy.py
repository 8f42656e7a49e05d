"""SPDY/3.1 framing (`binder.kubelet_api.spdy`) against moby/spdystream, the Go implementation
kube-apiserver and the kubelet use.

`spdy_vectors/vectors.json` holds frames written by moby/spdystream v0.5.1's framer, one
compression context for the whole sequence as in a session (regenerate with
`go run ./tests/kubelet_api/spdy_vectors emit`). Where Go is on PATH, the same program also reads
what our encoder writes (`decode`), so both directions are checked against the Go framer.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from binder.kubelet_api.spdy import (
    DICTIONARY,
    Data,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    GoAwayStatus,
    HeadersFrame,
    Ping,
    RstStatus,
    RstStream,
    Settings,
    SpdyProtocolError,
    SynReply,
    SynStream,
    WindowUpdate,
    header_block,
    parse_header_block,
)

VECTORS = Path(__file__).parent / "spdy_vectors"


def _vectors() -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = json.loads((VECTORS / "vectors.json").read_text())["frames"]
    return frames


def _as_json(frame: object) -> dict[str, Any]:
    """Our frame in the Go tool's JSON shape."""
    out: dict[str, Any]
    match frame:
        case SynStream():
            out = {
                "type": "SYN_STREAM",
                "stream_id": frame.stream_id,
                "flags": int(frame.fin) | 2 * frame.unidirectional,
            }
            if frame.associated_to:
                out["associated_to"] = frame.associated_to
            if frame.priority:
                out["priority"] = frame.priority
            out["headers"] = {k: sorted(v) for k, v in frame.headers.items()}
        case SynReply():
            out = {"type": "SYN_REPLY", "stream_id": frame.stream_id, "flags": int(frame.fin)}
            out["headers"] = {k: sorted(v) for k, v in frame.headers.items()}
        case HeadersFrame():
            out = {"type": "HEADERS", "stream_id": frame.stream_id, "flags": int(frame.fin)}
            out["headers"] = {k: sorted(v) for k, v in frame.headers.items()}
        case Data():
            out = {"type": "DATA", "stream_id": frame.stream_id, "flags": int(frame.fin)}
            if frame.data:
                out["data"] = frame.data.hex()
        case RstStream():
            out = {"type": "RST_STREAM", "stream_id": frame.stream_id, "status": frame.status, "flags": 0}
        case Ping():
            out = {"type": "PING", "id": frame.id, "flags": 0}
        case GoAway():
            out = {"type": "GOAWAY", "flags": 0}
            if frame.last_good_stream_id:
                out["stream_id"] = frame.last_good_stream_id
            if frame.status:
                out["status"] = frame.status
        case WindowUpdate():
            out = {"type": "WINDOW_UPDATE", "stream_id": frame.stream_id, "delta": frame.delta, "flags": 0}
        case Settings():
            out = {
                "type": "SETTINGS",
                "flags": int(frame.clear),
                "settings": [list(e) for e in frame.entries],
            }
        case _:
            raise AssertionError(frame)
    return out


def _normalise(go: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in go.items() if k != "hex"}
    if "headers" in out:
        out["headers"] = {k: sorted(v) for k, v in out["headers"].items()}
    elif out["type"] in ("SYN_STREAM", "SYN_REPLY", "HEADERS"):
        out["headers"] = {}
    return out


def test_the_dictionary_is_the_one_moby_spdystream_compresses_with() -> None:
    # Length and Adler-32 of `headerDictionary` in moby/spdystream/spdy/dictionary.go; the
    # Adler-32 is also the DICTID in the zlib header of every Go header block.
    assert len(DICTIONARY) == 1423
    assert zlib.adler32(DICTIONARY) == 0xE3C6A7C2
    first = bytes.fromhex(_vectors()[0]["hex"])
    assert first[20:24] == struct.pack(">I", 0xE3C6A7C2)  # after the zlib CMF/FLG bytes


def test_frames_written_by_the_go_framer_decode_one_by_one() -> None:
    decoder = FrameDecoder()
    for vector in _vectors():
        frames = decoder.feed(bytes.fromhex(vector["hex"]))
        assert len(frames) == 1, vector["type"]
        assert _as_json(frames[0]) == _normalise(vector)


def test_the_go_stream_decodes_whatever_way_it_is_cut() -> None:
    stream = b"".join(bytes.fromhex(v["hex"]) for v in _vectors())
    expected = [_normalise(v) for v in _vectors()]
    for size in (1, 3, 7, 64, len(stream)):
        decoder = FrameDecoder()
        frames = []
        for at in range(0, len(stream), size):
            frames += decoder.feed(stream[at : at + size])
        assert [_as_json(f) for f in frames] == expected
        assert decoder.buffered == 0


def test_what_client_go_sends_reads_as_named_streams() -> None:
    decoder = FrameDecoder()
    frames = [f for v in _vectors() for f in decoder.feed(bytes.fromhex(v["hex"]))]
    syn = [f for f in frames if isinstance(f, SynStream)]
    # http.Header canonicalises "streamType" to "Streamtype"; it arrives lower case.
    assert [s.header("streamType") for s in syn] == ["error", "stdin", "stdout", "data", "", "resize"]
    assert syn[3].header("port") == "8080" and syn[3].header("requestID") == "0"
    assert syn[3].fin and syn[3].priority == 3
    assert syn[4].headers["multi"] == ("a", "b") and syn[4].headers["empty"] == ("",)


def _session_frames() -> list[Any]:
    return [
        SynReply(stream_id=1),
        SynReply(stream_id=3, headers={"x-stream-protocol-version": "v4.channel.k8s.io"}),
        SynStream(stream_id=2, headers={"streamType": "error", "port": "80", "requestID": "1"}, priority=2),
        SynStream(stream_id=4, headers={"multi": ["a", "b"]}, fin=True, unidirectional=True, associated_to=1),
        HeadersFrame(stream_id=3, headers={"k": "v"}, fin=True),
        Data(stream_id=3, data=b"hello\n"),
        Data(stream_id=3, data=bytes(range(256)) * 300),
        Data(stream_id=3, fin=True),
        RstStream(stream_id=5, status=RstStatus.CANCEL),
        Ping(id=2),
        GoAway(last_good_stream_id=7, status=GoAwayStatus.INTERNAL_ERROR),
        WindowUpdate(stream_id=3, delta=4096),
        Settings(entries=((0, 7, 65536), (1, 4, 100))),
    ]


def test_our_frames_round_trip_through_our_decoder() -> None:
    encoder, decoder = FrameEncoder(), FrameDecoder()
    frames = _session_frames()
    wire = b"".join(encoder.encode(f) for f in frames)
    decoded = decoder.feed(wire)
    assert [_as_json(f) for f in decoded] == [_as_json(f) for f in frames]


@pytest.fixture(scope="module")
def go_framer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not on PATH: the Go-side decode check needs it")
    binary = tmp_path_factory.mktemp("spdyvectors") / "spdyvectors"
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."], cwd=VECTORS, capture_output=True, text=True, timeout=300
    )
    if built.returncode != 0:
        pytest.skip(f"cannot build the Go framer (offline module cache?): {built.stderr[-500:]}")
    return binary


def test_the_go_framer_reads_what_our_encoder_writes(go_framer: Path) -> None:
    encoder = FrameEncoder()
    frames = _session_frames()
    wire = b"".join(encoder.encode(f) for f in frames)
    result = subprocess.run(
        [str(go_framer), "decode"], input=wire.hex(), capture_output=True, text=True, timeout=60, check=True
    )
    assert [_normalise(f) for f in json.loads(result.stdout)] == [_as_json(f) for f in frames]


def test_header_blocks_are_sorted_lower_case_and_nul_joined() -> None:
    block = header_block({"B": "2", "a": ["x", "y"]})
    assert block == (
        struct.pack(">I", 2)
        + struct.pack(">I", 1) + b"a" + struct.pack(">I", 3) + b"x\x00y"
        + struct.pack(">I", 1) + b"b" + struct.pack(">I", 1) + b"2"
    )  # fmt: skip
    assert parse_header_block(block) == {"a": ("x", "y"), "b": ("2",)}


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(struct.pack(">II", 0, 0), id="data on stream 0"),
        pytest.param(struct.pack(">HHI", 0x8002, 6, 4) + b"\0\0\0\1", id="SPDY/2"),
        pytest.param(struct.pack(">HHI", 0x8003, 6, 3) + b"\0\0\1", id="short ping"),
        pytest.param(struct.pack(">HHI", 0x8003, 3, 8) + struct.pack(">II", 0, 5), id="rst on stream 0"),
        pytest.param(struct.pack(">HHI", 0x8003, 1, 14) + bytes(10) + b"junk", id="headers not zlib"),
        pytest.param(struct.pack(">HHI", 0x8003, 4, 8) + struct.pack(">II", 2, 0), id="settings count"),
        pytest.param(struct.pack(">HHI", 0x8003, 1, 1 << 23), id="huge control frame"),
    ],
)
def test_malformed_frames_are_protocol_errors(wire: bytes) -> None:
    with pytest.raises(SpdyProtocolError):
        FrameDecoder().feed(wire)


def test_an_oversized_data_frame_is_refused_before_it_is_buffered() -> None:
    with pytest.raises(SpdyProtocolError):
        FrameDecoder(max_data_length=1024).feed(struct.pack(">II", 1, 2048))


def test_a_decompression_bomb_in_a_header_block_is_refused() -> None:
    compressor = zlib.compressobj(9, zdict=DICTIONARY)
    bomb = compressor.compress(
        struct.pack(">I", 1) + struct.pack(">I", 1) + b"a" + struct.pack(">I", 1 << 21)
    )
    bomb += compressor.compress(b"x" * (1 << 21)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    frame = struct.pack(">HHI", 0x8003, 1, 10 + len(bomb)) + struct.pack(">IIBB", 1, 0, 0, 0) + bomb
    with pytest.raises(SpdyProtocolError, match="too large"):
        FrameDecoder().feed(frame)


def test_unknown_control_frames_are_skipped() -> None:
    unknown = struct.pack(">HHI", 0x8003, 0x42, 4) + b"abcd"
    assert FrameDecoder().feed(unknown + FrameEncoder().encode(Ping(id=1))) == [Ping(id=1)]
