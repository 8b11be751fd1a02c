// The connection cache: idle sessions kept per destination for the next
// request (Postfix's scache, in process).

package smtpclient

import (
	"sync"
	"time"
)

// cache holds idle sessions by key. A session is in the cache or in use
// by one request, never both.
type cache struct {
	mu      sync.Mutex
	idle    map[string][]*session
	n       int
	max     int           // bound on idle sessions in all
	ttl     time.Duration // smtp_connection_cache_time_limit
	maxAge  time.Duration // smtp_connection_reuse_time_limit
	maxUses int           // smtp_connection_reuse_count_limit (0 = no limit)
}

func newCache(ttl, maxAge time.Duration, maxUses, max int) *cache {
	return &cache{idle: map[string][]*session{}, ttl: ttl, maxAge: maxAge, maxUses: maxUses, max: max}
}

// get takes the most recently used idle session for key, or nil.
func (c *cache) get(key string) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.idle[key]
	for len(l) > 0 {
		s := l[len(l)-1]
		l = l[:len(l)-1]
		c.n--
		if time.Since(s.idle) < c.ttl {
			c.set(key, l)
			return s
		}
		// Too old to trust: drop it without the QUIT round trip, which
		// would delay the request that is waiting for a session.
		s.conn.Close()
	}
	c.set(key, l)
	return nil
}

func (c *cache) set(key string, l []*session) {
	if len(l) == 0 {
		delete(c.idle, key)
	} else {
		c.idle[key] = l
	}
}

// put keeps s for reuse if it may be reused; otherwise it ends it. It
// reports whether s was kept.
func (c *cache) put(s *session) bool {
	if c == nil || c.ttl <= 0 || s.broken ||
		(c.maxAge > 0 && time.Since(s.born) >= c.maxAge) ||
		(c.maxUses > 0 && s.uses >= c.maxUses) {
		s.quit()
		return false
	}
	s.idle = time.Now()
	c.mu.Lock()
	if c.n >= c.max {
		c.mu.Unlock()
		s.quit()
		return false
	}
	c.idle[s.key] = append(c.idle[s.key], s)
	c.n++
	c.mu.Unlock()
	return true
}

// expire ends the sessions idle for longer than the time limit, or all
// of them when all is true.
func (c *cache) expire(all bool) {
	var old []*session
	c.mu.Lock()
	for k, l := range c.idle {
		keep := l[:0]
		for _, s := range l {
			if all || time.Since(s.idle) >= c.ttl {
				old = append(old, s)
				c.n--
			} else {
				keep = append(keep, s)
			}
		}
		c.set(k, keep)
	}
	c.mu.Unlock()
	for _, s := range old {
		s.quit()
	}
}

// count returns the number of idle sessions.
func (c *cache) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
