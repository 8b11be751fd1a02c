package table

import "sync"

// Cache opens each "type:name" once and hands the same Table to every
// user, so a daemon that names one table in several parameters holds one
// copy and one file watch.
type Cache struct {
	o  Options
	mu sync.Mutex
	m  map[string]Table
}

// NewCache returns an empty cache whose tables are opened with o.
func NewCache(o Options) *Cache { return &Cache{o: o, m: map[string]Table{}} }

// Open returns the table for spec, opening it on first use.
func (c *Cache) Open(spec string) (Table, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.m[spec]; ok {
		return t, nil
	}
	t, err := Open(spec, c.o)
	if err != nil {
		return nil, err
	}
	c.m[spec] = t
	return t, nil
}

// Close closes every table opened through the cache.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var first error
	for k, t := range c.m {
		if err := t.Close(); err != nil && first == nil {
			first = err
		}
		delete(c.m, k)
	}
	return first
}
