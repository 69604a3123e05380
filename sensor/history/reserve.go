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
// Badger has under way.
func (s *Store) roomToWrite() error {
	if err := checkRoom(s.db.Opts().Dir, s.opts.ReserveBytes); err != nil {
		return fmt.Errorf("%w; nothing was written and it waits in memory: free disk space or enlarge the volume", err)
	}
	return nil
}

// checkRoom returns ErrDiskFull when the file system holding dir has less
// than reserve bytes free. When the free space cannot be read it returns
// nil: the write goes ahead.
func checkRoom(dir string, reserve uint64) error {
	free, _, err := freeSpace(dir)
	if err != nil || free >= reserve {
		return nil
	}
	return fmt.Errorf("%w: %d MiB free on the file system of %s, under the %d MiB kept in reserve",
		ErrDiskFull, free>>20, dir, reserve>>20)
}
