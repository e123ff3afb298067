package batches

import (
	"fmt"
	"math/big"
	"math/rand"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	minInt64 = "-9223372036854775808"
	maxInt64 = "9223372036854775807"
)

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func mustBig(t testing.TB, s string, base int) *big.Int {
	t.Helper()
	x, ok := new(big.Int).SetString(s, base)
	require.True(t, ok, "%q is not a base-%d number", s, base)
	return x
}

func uuidToBig(t testing.TB, s string) *big.Int {
	t.Helper()
	return mustBig(t, strings.ReplaceAll(s, "-", ""), 16)
}

// requireBounds asserts that bounds are strictly ascending numbers within
// [lo, hi] (parsed by parse), and below hi when the range is not a single
// value, so that no partition is empty by construction.
func requireBounds(t testing.TB, bounds []string, lo, hi *big.Int, parse func(testing.TB, string) *big.Int) {
	t.Helper()
	var prev *big.Int
	for i, b := range bounds {
		x := parse(t, b)
		require.True(t, x.Cmp(lo) >= 0, "bound %d (%s) below lo %s", i, b, lo)
		require.True(t, x.Cmp(hi) <= 0, "bound %d (%s) above hi %s", i, b, hi)
		if lo.Cmp(hi) < 0 {
			require.True(t, x.Cmp(hi) < 0, "bound %d (%s) is hi %s: the last partition would be empty", i, b, hi)
		}
		if prev != nil {
			require.True(t, x.Cmp(prev) > 0, "bound %d (%s) not above bound %d (%s)", i, b, i-1, bounds[i-1])
		}
		prev = x
	}
}

func parseDecimal(t testing.TB, s string) *big.Int {
	t.Helper()
	require.Equal(t, strings.TrimSpace(s), s)
	x := mustBig(t, s, 10)
	require.Equal(t, x.String(), s, "bound is not in canonical form")
	return x
}

func parseUUID(t testing.TB, s string) *big.Int {
	t.Helper()
	require.Regexp(t, uuidPattern, s)
	return uuidToBig(t, s)
}

func TestSplitIntegers_Exact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		lo, hi string
		n      int
		want   []string
	}{
		{"0", "100", 4, []string{"25", "50", "75"}},
		{"1", "1000", 2, []string{"500"}},
		{"0", "10", 3, []string{"3", "6"}},
		{"-100", "100", 4, []string{"-50", "0", "50"}},
		{"-100", "-20", 4, []string{"-80", "-60", "-40"}},
		{"-7", "-1", 2, []string{"-4"}},
		{"-1", "0", 2, []string{"-1"}},
		{minInt64, maxInt64, 2, []string{"-1"}},
		{minInt64, maxInt64, 4, []string{"-4611686018427387905", "-1", "4611686018427387903"}},
		{"0", maxInt64, 2, []string{"4611686018427387903"}},
		{minInt64, "0", 2, []string{"-4611686018427387904"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s..%s/%d", tt.lo, tt.hi, tt.n), func(t *testing.T) {
			t.Parallel()
			got := splitIntegers(tt.lo, tt.hi, tt.n)
			require.Equal(t, tt.want, got)
			requireBounds(t, got, mustBig(t, tt.lo, 10), mustBig(t, tt.hi, 10), parseDecimal)
		})
	}
}

func TestSplitIntegers_WideRanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		lo, hi string
		n      int
	}{
		{"1", "1000000", 8},
		{"1", "1000000", 1024},
		{"0", "7", 8}, // exactly one key per partition
		{"-1000", "1000", 16},
		{"-5000000000", "-4000000000", 8},
		{minInt64, maxInt64, 8},
		{minInt64, maxInt64, 1024},
		{minInt64, minInt64 + "0", 2}, // not int64, still split: keys are numeric text
		{maxInt64, "92233720368547758070", 10},
		{minInt64, "-9223372036854775000", 8},
		{"9223372036854775000", maxInt64, 8},
		{"-2147483648", "2147483647", 8}, // integer
		{"-32768", "32767", 1024},        // smallint
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s..%s/%d", tt.lo, tt.hi, tt.n), func(t *testing.T) {
			t.Parallel()
			lo, hi := mustBig(t, tt.lo, 10), mustBig(t, tt.hi, 10)
			if lo.Cmp(hi) > 0 {
				lo, hi = hi, lo
			}
			got := splitIntegers(lo.String(), hi.String(), tt.n)
			require.Len(t, got, tt.n-1)
			requireBounds(t, got, lo, hi, parseDecimal)
		})
	}
}

func TestSplitIntegers_NarrowRanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		lo, hi string
		n      int
		want   []string
	}{
		{"1", "3", 8, []string{"1", "2"}},
		{"5", "5", 8, []string{"5"}},
		{"0", "1", 4, []string{"0"}},
		{"-3", "-1", 8, []string{"-3", "-2"}},
		{maxInt64, maxInt64, 8, []string{maxInt64}},
		{minInt64, minInt64, 8, []string{minInt64}},
		{"9223372036854775805", maxInt64, 16, []string{"9223372036854775805", "9223372036854775806"}},
		{minInt64, "-9223372036854775806", 16, []string{minInt64, "-9223372036854775807"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s..%s/%d", tt.lo, tt.hi, tt.n), func(t *testing.T) {
			t.Parallel()
			got := splitIntegers(tt.lo, tt.hi, tt.n)
			require.Equal(t, tt.want, got)
			require.Less(t, len(got), tt.n-1, "narrow ranges give fewer bounds")
			requireBounds(t, got, mustBig(t, tt.lo, 10), mustBig(t, tt.hi, 10), parseDecimal)
		})
	}
}

func TestSplitIntegers_OnePartition(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 0, -3} {
		require.Empty(t, splitIntegers("1", "1000000", n), "n=%d", n)
	}
}

func TestSplitIntegers_NotNumbers(t *testing.T) {
	t.Parallel()
	for _, tt := range [][2]string{{"a", "10"}, {"1", "ten"}, {"", "10"}, {"1.5", "10"}, {"1", "1e6"}, {"0x10", "0x20"}} {
		require.Nil(t, splitIntegers(tt[0], tt[1], 8), "%q..%q", tt[0], tt[1])
	}
}

func TestSplitIntegers_Random(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewSource(1))
	for range 2000 {
		a, b := rng.Int63()-rng.Int63(), rng.Int63()-rng.Int63()
		if rng.Intn(4) == 0 { // many narrow ranges too
			b = a + rng.Int63n(20)
			if b < a {
				b = a
			}
		}
		if a > b {
			a, b = b, a
		}
		n := 1 + rng.Intn(64)
		lo, hi := big.NewInt(a), big.NewInt(b)
		got := splitIntegers(lo.String(), hi.String(), n)
		requireBounds(t, got, lo, hi, parseDecimal)
		width := new(big.Int).Sub(hi, lo)
		if width.Cmp(big.NewInt(int64(n))) >= 0 {
			require.Len(t, got, n-1, "%d..%d/%d", a, b, n)
		} else {
			require.LessOrEqual(t, len(got), n-1, "%d..%d/%d", a, b, n)
		}
	}
}

func TestSplitUUIDs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		lo, hi string
		n      int
	}{
		{"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff", 8},
		{"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff", 1024},
		{"0b6f2a4e-1c3d-4e5f-8a7b-9c0d1e2f3a4b", "f3e2d1c0-b9a8-4776-9554-433221100fed", 8},
		// v7: time-ordered, a narrow band of the space.
		{"018f0c1e-7b2a-7c3d-8e4f-5a6b7c8d9e0f", "018f0c9a-0000-7000-8000-000000000000", 16},
		// Upper-case input still gives canonical lower-case bounds.
		{"0B6F2A4E-1C3D-4E5F-8A7B-9C0D1E2F3A4B", "F3E2D1C0-B9A8-4776-9554-433221100FED", 4},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s..%s/%d", tt.lo, tt.hi, tt.n), func(t *testing.T) {
			t.Parallel()
			got := splitUUIDs(tt.lo, tt.hi, tt.n)
			require.Len(t, got, tt.n-1)
			requireBounds(t, got, uuidToBig(t, tt.lo), uuidToBig(t, tt.hi), parseUUID)
			// Postgres orders uuids byte by byte, which for canonical
			// lower-case text is the text order.
			for i := 1; i < len(got); i++ {
				require.Less(t, got[i-1], got[i])
			}
			if len(got) > 0 {
				require.Less(t, strings.ToLower(tt.lo), got[0])
				require.Less(t, got[len(got)-1], strings.ToLower(tt.hi))
			}
		})
	}
}

func TestSplitUUIDs_Exact(t *testing.T) {
	t.Parallel()
	got := splitUUIDs("00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff", 4)
	require.Equal(t, []string{
		"3fffffff-ffff-ffff-ffff-ffffffffffff",
		"7fffffff-ffff-ffff-ffff-ffffffffffff",
		"bfffffff-ffff-ffff-ffff-ffffffffffff",
	}, got)

	got = splitUUIDs("00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000010", 2)
	require.Equal(t, []string{"00000000-0000-0000-0000-000000000008"}, got, "leading zeros are kept")
}

func TestSplitUUIDs_Narrow(t *testing.T) {
	t.Parallel()
	lo, hi := "a0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-000000000003"
	got := splitUUIDs(lo, hi, 8)
	require.Equal(t, []string{lo, "a0000000-0000-4000-8000-000000000002"}, got)
	requireBounds(t, got, uuidToBig(t, lo), uuidToBig(t, hi), parseUUID)

	same := "a0000000-0000-4000-8000-00000000000f"
	require.Equal(t, []string{same}, splitUUIDs(same, same, 8))
}

func TestSplitUUIDs_NotUUIDs(t *testing.T) {
	t.Parallel()
	require.Nil(t, splitUUIDs("not-a-uuid", "ffffffff-ffff-ffff-ffff-ffffffffffff", 8))
	require.Nil(t, splitUUIDs("00000000-0000-0000-0000-000000000000", "", 8))
}

func TestSplitUUIDs_Random(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewSource(2))
	format := func(x *big.Int) string {
		h := fmt.Sprintf("%032x", x)
		return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	}
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for range 500 {
		a, b := new(big.Int).Rand(rng, limit), new(big.Int).Rand(rng, limit)
		if a.Cmp(b) > 0 {
			a, b = b, a
		}
		n := 2 + rng.Intn(100)
		got := splitUUIDs(format(a), format(b), n)
		requireBounds(t, got, a, b, parseUUID)
		require.Len(t, got, n-1)
	}
}

func TestSplitBig_Formatter(t *testing.T) {
	t.Parallel()
	var seen []string
	got := splitBig(big.NewInt(0), big.NewInt(30), 3, func(x *big.Int) string {
		s := "k" + x.String()
		seen = append(seen, s)
		return s
	})
	require.Equal(t, []string{"k10", "k20"}, got)
	require.Equal(t, got, seen)

	// Deduplication compares the formatted text: a formatter that maps
	// neighbours to one text gives one bound for them.
	got = splitBig(big.NewInt(0), big.NewInt(100), 10, func(x *big.Int) string {
		return new(big.Int).Div(x, big.NewInt(50)).String()
	})
	require.Equal(t, []string{"0", "1"}, got)
}

func TestSplitBig_DoesNotModifyInputs(t *testing.T) {
	t.Parallel()
	lo, hi := big.NewInt(-10), big.NewInt(10)
	splitBig(lo, hi, 8, func(x *big.Int) string { return x.String() })
	require.Equal(t, int64(-10), lo.Int64())
	require.Equal(t, int64(10), hi.Int64())
}
