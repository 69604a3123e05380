package capture

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// fileBuffer is the read buffer for capture files: pcapgo does no
// buffering of its own beyond what it is given.
const fileBuffer = 1 << 20

type packetReader interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	LinkType() layers.LinkType
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// FileSource reads a pcap or pcapng file, optionally gzip-compressed. A
// truncated or corrupt file ends with a *FileError naming the byte offset
// of the record that could not be read; the records before it were
// returned normally.
type FileSource struct {
	path    string
	f       *os.File
	gz      bool
	count   *countingReader
	br      *bufio.Reader
	r       packetReader
	mm      *mmapPcap // set for plain pcap files, which are read in place
	records int64
}

// FileError reports where a capture file stopped making sense.
type FileError struct {
	Path   string
	Offset int64 // byte offset of the record that failed (in the decompressed stream when Gzip)
	Record int64 // 1-based number of that record
	Gzip   bool
	Err    error
}

func (e *FileError) Error() string {
	where := "byte offset"
	if e.Gzip {
		where = "decompressed byte offset"
	}
	what := "corrupt"
	if errors.Is(e.Err, io.ErrUnexpectedEOF) {
		what = "truncated"
	}
	return fmt.Sprintf("%s: %s capture file at %s %d (record %d): %v; the %d records before it were read",
		e.Path, what, where, e.Offset, e.Record, e.Err, e.Record-1)
}

// Unwrap returns the reader's error (io.ErrUnexpectedEOF for a truncated file).
func (e *FileError) Unwrap() error { return e.Err }

// OpenFile opens a pcap or pcapng capture of Ethernet frames, gzip
// compressed or not.
func OpenFile(path string) (*FileSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture file: %w", err)
	}
	s := &FileSource{path: path, f: f}
	if err := s.init(); err != nil {
		f.Close()
		return nil, err
	}
	// pcapgo has validated the header; walk the records of a plain pcap
	// file in place.
	if _, ok := s.r.(*pcapgo.Reader); ok && !s.gz {
		if s.mm, err = mapPcap(f); err != nil {
			f.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *FileSource) init() error {
	var under io.Reader = s.f
	raw := bufio.NewReaderSize(s.f, fileBuffer)
	magic, err := raw.Peek(4)
	if err != nil {
		return fmt.Errorf("%s: not a capture file (shorter than a file header): %w", s.path, err)
	}
	under = raw
	if magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(raw)
		if err != nil {
			return fmt.Errorf("%s: gzip header: %w", s.path, err)
		}
		under, s.gz = zr, true
	}
	s.count = &countingReader{r: under}
	// pcapgo reuses a *bufio.Reader of at least its default size as it is,
	// so the bytes it consumed are the count less what is still buffered.
	s.br = bufio.NewReaderSize(s.count, fileBuffer)
	magic, err = s.br.Peek(4)
	if err != nil {
		return fmt.Errorf("%s: not a capture file (shorter than a file header): %w", s.path, err)
	}
	if magic[0] == 0x0a && magic[1] == 0x0d && magic[2] == 0x0d && magic[3] == 0x0a {
		ng, err := pcapgo.NewNgReader(s.br, pcapgo.NgReaderOptions{})
		if err != nil {
			return fmt.Errorf("%s: pcapng header: %w", s.path, err)
		}
		s.r = ng
	} else {
		pr, err := pcapgo.NewReader(s.br)
		if err != nil {
			return fmt.Errorf("%s: not a pcap or pcapng file: %w", s.path, err)
		}
		s.r = pr
	}
	if lt := s.r.LinkType(); lt != layers.LinkTypeEthernet {
		return fmt.Errorf("%s: link type %v: only Ethernet captures are supported (capture on the interface itself, not with tcpdump -i any)", s.path, lt)
	}
	return nil
}

// offset is the number of bytes the reader has consumed.
func (s *FileSource) offset() int64 { return s.count.n - int64(s.br.Buffered()) }

// Read returns the next record; io.EOF after the last one.
func (s *FileSource) Read(p *Packet) error {
	if s.mm != nil {
		at := s.mm.off
		if err := s.mm.next(p); err != nil {
			if err == io.EOF {
				return err
			}
			return &FileError{Path: s.path, Offset: int64(at), Record: s.records + 1, Err: err}
		}
		s.records++
		p.WireLen = max(p.WireLen, len(p.Data))
		return nil
	}
	at := s.offset()
	data, ci, err := s.r.ZeroCopyReadPacketData()
	if err != nil {
		if err == io.EOF && s.offset() == at {
			return io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return &FileError{Path: s.path, Offset: at, Record: s.records + 1, Gzip: s.gz, Err: err}
	}
	s.records++
	p.Data = data
	p.WireLen = max(ci.Length, len(data))
	p.Time = ci.Timestamp.UnixNano()
	return nil
}

// readBatch returns up to len(ps) records: several from a mapped pcap,
// whose frames stay valid until Close, one otherwise. When it returns an
// error with n > 0, the first n records are good.
func (s *FileSource) readBatch(ps []Packet) (n int, err error) {
	if s.mm == nil {
		if err := s.Read(&ps[0]); err != nil {
			return 0, err
		}
		return 1, nil
	}
	s.mm.prefetchAhead()
	for n < len(ps) {
		if err := s.Read(&ps[n]); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Records is how many records Read has returned.
func (s *FileSource) Records() int64 { return s.records }

// Close closes the file.
func (s *FileSource) Close() error {
	if s.mm != nil {
		s.mm.close()
	}
	return s.f.Close()
}
