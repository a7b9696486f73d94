package loadtest

// lru is a fixed-capacity least-recently-used set of user ids: the
// simulated cache of users' data in one datacenter. Entries live in flat
// arrays linked into a list, most recent first, so that a lookup allocates
// nothing once the cache is full. It is not safe for concurrent use; the
// datacenter holds a lock around each request's reads.
type lru struct {
	index map[uint64]int32 // user -> slot
	keys  []uint64         // slot -> user
	prev  []int32          // slot -> more recent slot, -1 at the head
	next  []int32          // slot -> less recent slot, -1 at the tail
	head  int32            // most recently used slot, -1 if empty
	tail  int32            // least recently used slot, -1 if empty
}

// newLRU returns an empty cache of capacity entries (at least 1).
func newLRU(capacity int) *lru {
	capacity = max(capacity, 1)
	return &lru{
		index: make(map[uint64]int32, capacity),
		keys:  make([]uint64, 0, capacity),
		prev:  make([]int32, 0, capacity),
		next:  make([]int32, 0, capacity),
		head:  -1,
		tail:  -1,
	}
}

// Cap returns the capacity in entries.
func (c *lru) Cap() int { return cap(c.keys) }

// Len returns the number of entries held.
func (c *lru) Len() int { return len(c.index) }

// touch reads user u's data: a hit if it is cached, which makes it the most
// recent entry; otherwise a miss, which caches it, evicting the least
// recently used entry when the cache is full.
func (c *lru) touch(u uint64) (hit bool) {
	if s, ok := c.index[u]; ok {
		c.moveToFront(s)
		return true
	}
	var s int32
	if len(c.keys) < cap(c.keys) {
		s = int32(len(c.keys))
		c.keys = append(c.keys, u)
		c.prev = append(c.prev, -1)
		c.next = append(c.next, -1)
	} else {
		s = c.tail
		delete(c.index, c.keys[s])
		c.unlink(s)
		c.keys[s] = u
	}
	c.index[u] = s
	c.pushFront(s)
	return false
}

// contains reports whether u is cached, without changing the order.
func (c *lru) contains(u uint64) bool {
	_, ok := c.index[u]
	return ok
}

// reset empties the cache, keeping its memory.
func (c *lru) reset() {
	clear(c.index)
	c.keys, c.prev, c.next = c.keys[:0], c.prev[:0], c.next[:0]
	c.head, c.tail = -1, -1
}

func (c *lru) moveToFront(s int32) {
	if c.head == s {
		return
	}
	c.unlink(s)
	c.pushFront(s)
}

func (c *lru) unlink(s int32) {
	p, n := c.prev[s], c.next[s]
	if p >= 0 {
		c.next[p] = n
	} else {
		c.head = n
	}
	if n >= 0 {
		c.prev[n] = p
	} else {
		c.tail = p
	}
	c.prev[s], c.next[s] = -1, -1
}

func (c *lru) pushFront(s int32) {
	c.prev[s], c.next[s] = -1, c.head
	if c.head >= 0 {
		c.prev[c.head] = s
	}
	c.head = s
	if c.tail < 0 {
		c.tail = s
	}
}
