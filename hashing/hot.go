package hashing

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// MaxSpread bounds how many sibling buckets one hot key fans out over.
const MaxSpread = 64

// SpreadPolicy says over how many buckets a hot key spreads.
type SpreadPolicy struct {
	// FollowersPerBucket: an account gets one bucket per this many
	// followers, so k = ceil(followers / FollowersPerBucket).
	FollowersPerBucket int
	// Max caps k (at most MaxSpread).
	Max int
}

// Factor is the spread k for an account with followers followers: at
// least 1 (not spread), at most p.Max.
func (p SpreadPolicy) Factor(followers int) int {
	if p.FollowersPerBucket <= 0 || followers <= 0 {
		return 1
	}
	k := int(math.Ceil(float64(followers) / float64(p.FollowersPerBucket)))
	return max(1, min(k, p.Max, MaxSpread))
}

// HotKey is a routing key known to be hot, with its follower count.
type HotKey struct {
	Key       string `json:"key"`
	Followers int    `json:"followers"`
	Spread    int    `json:"spread"`
}

// HotList is an immutable set of hot keys with their spread, looked up by
// key hash. A nil *HotList is valid and empty.
type HotList struct {
	spread map[uint64]uint8
	keys   []HotKey
}

// NewHotList makes the list of keys, spreading each by p.
func NewHotList(keys []HotKey, p SpreadPolicy) *HotList {
	l := &HotList{spread: make(map[uint64]uint8, len(keys))}
	for _, k := range keys {
		k.Spread = p.Factor(k.Followers)
		if k.Spread > 1 {
			l.spread[HashString(k.Key)] = uint8(k.Spread)
			l.keys = append(l.keys, k)
		}
	}
	return l
}

// Spread is the spread of the key with hash h: 1 when it is not hot.
func (l *HotList) Spread(h uint64) int {
	if l == nil || len(l.spread) == 0 {
		return 1
	}
	if k, ok := l.spread[h]; ok {
		return int(k)
	}
	return 1
}

// Keys lists the hot keys that spread (k > 1). The slice is shared.
func (l *HotList) Keys() []HotKey {
	if l == nil {
		return nil
	}
	return l.keys
}

// ReadHotKeys reads a hot-account file: CSV lines "key,followers", an
// optional header line "user,followers" (what `socialroute partition
// --hot-out` writes), blank lines and '#' comments. A bad line is an error
// naming its line number; nothing is skipped silently.
func ReadHotKeys(r io.Reader) ([]HotKey, error) {
	var out []HotKey
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") || (line == 1 && strings.HasPrefix(text, "user,")) {
			continue
		}
		key, n, ok := strings.Cut(text, ",")
		key = strings.TrimSpace(key)
		followers, err := strconv.Atoi(strings.TrimSpace(n))
		switch {
		case !ok || key == "":
			return nil, fmt.Errorf("hashing: hot keys line %d: want \"key,followers\", got %q", line, text)
		case err != nil || followers < 0:
			return nil, fmt.Errorf("hashing: hot keys line %d: followers %q is not a count", line, strings.TrimSpace(n))
		}
		out = append(out, HotKey{Key: key, Followers: followers})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("hashing: hot keys: %w", err)
	}
	return out, nil
}

// LoadHotKeys reads the hot-account file at path.
func LoadHotKeys(path string) ([]HotKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hashing: %w", err)
	}
	defer f.Close()
	keys, err := ReadHotKeys(f)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return keys, nil
}

// PickSibling chooses which of k siblings a request uses: by the viewer's
// hash when the request names a viewer (a viewer keeps hitting the same
// sibling, so the same cache), otherwise by random, a number the caller
// draws per request.
func PickSibling(k int, viewer uint64, hasViewer bool, random uint64) int {
	if k <= 1 {
		return 0
	}
	if hasViewer {
		return int(Mix64(viewer) % uint64(k))
	}
	return int(random % uint64(k))
}
