// Test vectors for binder/kubelet_api/spdy.py, written and read by moby/spdystream's framer
// (the SPDY/3.1 implementation kube-apiserver and the kubelet use).
//
//	go run . emit     JSON: frames written by one framer, in order, and the bytes it wrote
//	go run . decode   reads the hex of a byte stream on stdin, prints its frames as JSON
package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"

	"github.com/moby/spdystream/spdy"
)

type frameJSON struct {
	Type       string              `json:"type"`
	StreamID   uint32              `json:"stream_id,omitempty"`
	Associated uint32              `json:"associated_to,omitempty"`
	Priority   uint8               `json:"priority,omitempty"`
	Flags      uint8               `json:"flags"`
	Headers    map[string][]string `json:"headers,omitempty"`
	Data       string              `json:"data,omitempty"`
	Status     uint32              `json:"status,omitempty"`
	ID         uint32              `json:"id,omitempty"`
	Delta      uint32              `json:"delta,omitempty"`
	Settings   [][3]uint32         `json:"settings,omitempty"`
	Hex        string              `json:"hex,omitempty"`
}

func lower(h http.Header) map[string][]string {
	out := map[string][]string{}
	for k, v := range h {
		out[strings.ToLower(k)] = v
	}
	return out
}

func describe(f spdy.Frame) frameJSON {
	switch f := f.(type) {
	case *spdy.SynStreamFrame:
		return frameJSON{Type: "SYN_STREAM", StreamID: uint32(f.StreamId), Associated: uint32(f.AssociatedToStreamId), Priority: f.Priority, Flags: uint8(f.CFHeader.Flags), Headers: lower(f.Headers)}
	case *spdy.SynReplyFrame:
		return frameJSON{Type: "SYN_REPLY", StreamID: uint32(f.StreamId), Flags: uint8(f.CFHeader.Flags), Headers: lower(f.Headers)}
	case *spdy.HeadersFrame:
		return frameJSON{Type: "HEADERS", StreamID: uint32(f.StreamId), Flags: uint8(f.CFHeader.Flags), Headers: lower(f.Headers)}
	case *spdy.RstStreamFrame:
		return frameJSON{Type: "RST_STREAM", StreamID: uint32(f.StreamId), Status: uint32(f.Status)}
	case *spdy.PingFrame:
		return frameJSON{Type: "PING", ID: f.Id}
	case *spdy.GoAwayFrame:
		return frameJSON{Type: "GOAWAY", StreamID: uint32(f.LastGoodStreamId), Status: uint32(f.Status)}
	case *spdy.WindowUpdateFrame:
		return frameJSON{Type: "WINDOW_UPDATE", StreamID: uint32(f.StreamId), Delta: f.DeltaWindowSize}
	case *spdy.SettingsFrame:
		var s [][3]uint32
		for _, v := range f.FlagIdValues {
			s = append(s, [3]uint32{uint32(v.Flag), uint32(v.Id), v.Value})
		}
		return frameJSON{Type: "SETTINGS", Flags: uint8(f.CFHeader.Flags), Settings: s}
	case *spdy.DataFrame:
		return frameJSON{Type: "DATA", StreamID: uint32(f.StreamId), Flags: uint8(f.Flags), Data: hex.EncodeToString(f.Data)}
	}
	panic(fmt.Sprintf("unknown frame %T", f))
}

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// What client-go's remotecommand and port-forward send, plus one of every other frame type.
func frames() []spdy.Frame {
	return []spdy.Frame{
		&spdy.SynStreamFrame{StreamId: 1, Headers: header("streamType", "error")},
		&spdy.SynStreamFrame{StreamId: 3, Headers: header("streamType", "stdin")},
		&spdy.SynStreamFrame{StreamId: 5, Headers: header("streamType", "stdout")},
		&spdy.SynStreamFrame{StreamId: 7, Priority: 3, CFHeader: spdy.ControlFrameHeader{Flags: spdy.ControlFlagFin}, Headers: header("streamType", "data", "port", "8080", "requestID", "0")},
		&spdy.SynStreamFrame{StreamId: 9, Headers: header("multi", "a", "multi", "b", "empty", "")},
		&spdy.SynReplyFrame{StreamId: 2, Headers: http.Header{}},
		&spdy.SynReplyFrame{StreamId: 4, CFHeader: spdy.ControlFrameHeader{Flags: spdy.ControlFlagFin}, Headers: header("streamType", "stdout")},
		&spdy.HeadersFrame{StreamId: 3, Headers: header("x-extra", "1")},
		&spdy.DataFrame{StreamId: 3, Data: []byte("abc\n")},
		&spdy.DataFrame{StreamId: 3, Flags: spdy.DataFlagFin, Data: []byte{}},
		&spdy.DataFrame{StreamId: 5, Data: bytes.Repeat([]byte{0, 1, 2, 0xff}, 100)},
		&spdy.RstStreamFrame{StreamId: 5, Status: spdy.Cancel},
		&spdy.RstStreamFrame{StreamId: 7, Status: spdy.RefusedStream},
		&spdy.PingFrame{Id: 1},
		&spdy.PingFrame{Id: 0xfffffffe},
		&spdy.GoAwayFrame{LastGoodStreamId: 9, Status: spdy.GoAwayOK},
		&spdy.GoAwayFrame{LastGoodStreamId: 0, Status: spdy.GoAwayProtocolError},
		&spdy.WindowUpdateFrame{StreamId: 1, DeltaWindowSize: 65536},
		&spdy.SettingsFrame{FlagIdValues: []spdy.SettingsFlagIdValue{{Flag: 0, Id: spdy.SettingsInitialWindowSize, Value: 65536}, {Flag: spdy.FlagSettingsPersistValue, Id: spdy.SettingsMaxConcurrentStreams, Value: 100}}},
		&spdy.SynStreamFrame{StreamId: 11, Headers: header("streamType", "resize")},
	}
}

func emit() {
	var all bytes.Buffer
	framer, err := spdy.NewFramer(&all, nil)
	if err != nil {
		panic(err)
	}
	var out []frameJSON
	for _, f := range frames() {
		before := all.Len()
		if err := framer.WriteFrame(f); err != nil {
			panic(err)
		}
		d := describe(f)
		d.Hex = hex.EncodeToString(all.Bytes()[before:])
		out = append(out, d)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	if err := enc.Encode(map[string]any{"generator": "github.com/moby/spdystream v0.5.1 spdy.Framer", "frames": out}); err != nil {
		panic(err)
	}
}

func decode() {
	raw, err := io.ReadAll(bufio.NewReader(os.Stdin))
	if err != nil {
		panic(err)
	}
	data, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		panic(err)
	}
	framer, err := spdy.NewFramer(io.Discard, bytes.NewReader(data))
	if err != nil {
		panic(err)
	}
	out := []frameJSON{}
	for {
		f, err := framer.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "read error:", err)
			os.Exit(1)
		}
		out = append(out, describe(f))
	}
	for i := range out {
		if out[i].Headers != nil {
			for _, v := range out[i].Headers {
				sort.Strings(v)
			}
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: spdyvectors emit|decode")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "emit":
		emit()
	case "decode":
		decode()
	default:
		os.Exit(2)
	}
}
