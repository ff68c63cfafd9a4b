// Command gojson writes what Go's encoding/json makes of float32 and float64 slices: the
// oracle for runtime/jsonfloat.py. Input: lines "f32 HEX..." or "f64 HEX..." (IEEE bit
// patterns, space-separated); output: one JSON array per line.
package main

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"strconv"
	"strings"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<26)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		fields := strings.Fields(in.Text())
		var v any
		switch fields[0] {
		case "f32":
			xs := make([]float32, 0, len(fields)-1)
			for _, h := range fields[1:] {
				bits, err := strconv.ParseUint(h, 16, 32)
				if err != nil {
					panic(err)
				}
				xs = append(xs, math.Float32frombits(uint32(bits)))
			}
			v = xs
		default:
			xs := make([]float64, 0, len(fields)-1)
			for _, h := range fields[1:] {
				bits, err := strconv.ParseUint(h, 16, 64)
				if err != nil {
					panic(err)
				}
				xs = append(xs, math.Float64frombits(bits))
			}
			v = xs
		}
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		out.Write(b)
		out.WriteByte('\n')
	}
}
