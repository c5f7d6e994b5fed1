package asyncsip

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// minRouteKey is the shortest route key accepted from a file.
const minRouteKey = 16

// loadRouteKey reads the route key in path, or creates the file with 32
// random bytes when it does not exist (O_EXCL: two processes starting at
// once do not overwrite each other's key).
func loadRouteKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) < minRouteKey {
			return nil, fmt.Errorf("asyncsip: route key file %s holds %d bytes, want at least %d", path, len(key), minRouteKey)
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("asyncsip: route key file: %w", err)
	}
	key = make([]byte, 32)
	_, _ = rand.Read(key)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return loadRouteKey(path) // created meanwhile by another process
	}
	if err != nil {
		return nil, fmt.Errorf("asyncsip: route key file: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, fmt.Errorf("asyncsip: route key file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("asyncsip: route key file %s: %w", path, err)
	}
	return key, nil
}
