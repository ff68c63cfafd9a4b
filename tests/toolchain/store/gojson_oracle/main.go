// Reference oracle for the Go-JSON encoder tests: reads cases on stdin, prints what Go's
// encoding/json (json.NewEncoder(w).Encode) writes for each, one per line.
//
// Input: {"floats": ["<uint64 bits>", ...], "strings": ["<base64 utf-8>", ...], "maps": [<json>...]}
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"os"
	"strconv"
)

type cases struct {
	Floats  []string          `json:"floats"`
	Strings []string          `json:"strings"`
	Maps    []json.RawMessage `json:"maps"`
}

func encode(w *bufio.Writer, v any) {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		w.WriteString("ERROR\n")
		return
	}
	w.Write(b.Bytes())
}

func main() {
	var c cases
	if err := json.NewDecoder(os.Stdin).Decode(&c); err != nil {
		panic(err)
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for _, f := range c.Floats {
		bits, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			panic(err)
		}
		encode(w, math.Float64frombits(bits))
	}
	for _, s := range c.Strings {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			panic(err)
		}
		encode(w, string(raw))
	}
	for _, m := range c.Maps {
		var v any
		if err := json.Unmarshal(m, &v); err != nil {
			panic(err)
		}
		encode(w, v)
	}
}
