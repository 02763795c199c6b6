package emulator

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"
)

// dict is an ordered property-list dictionary. Values may be string,
// bool, int, []string, []any or dict.
type dict []struct {
	key string
	val any
}

// plistXML encodes d as an XML property list, as Xcode writes them.
func plistXML(d dict) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n" +
		`<plist version="1.0">` + "\n")
	writePlistValue(&b, d, 0)
	b.WriteString("</plist>\n")
	return b.Bytes()
}

func writePlistValue(b *bytes.Buffer, v any, depth int) {
	indent := strings.Repeat("\t", depth)
	switch v := v.(type) {
	case string:
		b.WriteString(indent + "<string>")
		xml.EscapeText(b, []byte(v))
		b.WriteString("</string>\n")
	case bool:
		fmt.Fprintf(b, "%s<%t/>\n", indent, v)
	case int:
		fmt.Fprintf(b, "%s<integer>%d</integer>\n", indent, v)
	case []string:
		items := make([]any, len(v))
		for i, s := range v {
			items[i] = s
		}
		writePlistValue(b, items, depth)
	case []any:
		b.WriteString(indent + "<array>\n")
		for _, item := range v {
			writePlistValue(b, item, depth+1)
		}
		b.WriteString(indent + "</array>\n")
	case dict:
		b.WriteString(indent + "<dict>\n")
		for _, e := range v {
			b.WriteString(indent + "\t<key>")
			xml.EscapeText(b, []byte(e.key))
			b.WriteString("</key>\n")
			writePlistValue(b, e.val, depth+1)
		}
		b.WriteString(indent + "</dict>\n")
	default:
		panic(fmt.Sprintf("emulator: plist value of type %T", v))
	}
}
