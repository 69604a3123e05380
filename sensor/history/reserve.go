package history

import "fmt"

// RoomToWrite returns ErrDiskFull, as the Store's own writes do, while
// the file system holding the database has less free space than
// Options.ReserveBytes. Others writing to DB() ask it first.
func (s *Store) RoomToWrite() error { return s.roomToWrite() }

// roomToWrite returns ErrDiskFull, with the figures, when the file system
// holding the database has less free space than the reserve. Badger writes
// its log and new tables through memory-mapped sparse files: a store into
// one on a full file system raises SIGBUS and kills the process instead of
// returning an error, so writes stop while there is still room for what
// Badger has under way. When the free space cannot be read the write goes
// ahead.
func (s *Store) roomToWrite() error {
	dir := s.db.Opts().Dir
	free, _, err := freeSpace(dir)
	if err != nil || free >= s.opts.ReserveBytes {
		return nil
	}
	return fmt.Errorf("%w: %d MiB free on the file system of %s, under the %d MiB kept in reserve; nothing was written and it waits in memory: free disk space or enlarge the volume",
		ErrDiskFull, free>>20, dir, s.opts.ReserveBytes>>20)
}
