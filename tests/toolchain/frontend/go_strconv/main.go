// Oracle for tests/toolchain/frontend/test_parameters.py: Go's strconv and fmt on one
// request per line ({"op", "s", "bits"}), one JSON answer per line.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
)

type request struct {
	Op   string `json:"op"`
	S    string `json:"s"`
	Bits uint64 `json:"bits"`
}

type answer struct {
	Ok   bool   `json:"ok"`
	Int  int64  `json:"int"`
	Bits uint64 `json:"bits"`
	Bool bool   `json:"bool"`
	Text string `json:"text"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			panic(err)
		}
		var ans answer
		switch req.Op {
		case "int":
			v, err := strconv.ParseInt(req.S, 10, 64)
			ans.Ok, ans.Int = err == nil, v
		case "float32":
			v, err := strconv.ParseFloat(req.S, 32)
			ans.Ok, ans.Bits = err == nil, uint64(math.Float32bits(float32(v)))
		case "bool":
			v, err := strconv.ParseBool(req.S)
			ans.Ok, ans.Bool = err == nil, v
		case "fmtv":
			ans.Ok, ans.Text = true, fmt.Sprintf("%v", math.Float64frombits(req.Bits))
		}
		if err := enc.Encode(ans); err != nil {
			panic(err)
		}
	}
}
