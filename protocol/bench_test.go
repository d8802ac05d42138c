package protocol_test

import (
	"testing"

	"outpost/internal/corpus"
	"outpost/protocol"
)

func benchWrite(b *testing.B, msg any) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := protocol.WriteBody(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func benchRead[T any](b *testing.B, msg any) {
	body, enc, err := protocol.WriteBody(msg)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var out T
		if err := protocol.ReadBody(body, enc, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func full50(b *testing.B) *protocol.SyncRequest {
	caps, err := corpus.Load("../testdata/docker")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range caps {
		if len(c.Docker.Containers) == 50 {
			req, err := corpus.FullPush(c.Docker, 1, 1)
			if err != nil {
				b.Fatal(err)
			}
			return req
		}
	}
	b.Fatal("no 50-container capture")
	return nil
}

func BenchmarkWriteBodyPing(b *testing.B)   { benchWrite(b, corpus.Ping(1234)) }
func BenchmarkReadBodyPing(b *testing.B)    { benchRead[protocol.SyncRequest](b, corpus.Ping(1234)) }
func BenchmarkWriteBodyFull50(b *testing.B) { benchWrite(b, full50(b)) }
func BenchmarkReadBodyFull50(b *testing.B) {
	benchRead[protocol.SyncRequest](b, full50(b))
}
