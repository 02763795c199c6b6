package fs

import (
	"os"
	"testing"
)

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/mnt/plain`:         "/mnt/plain",
		`/mnt/with\040space`: "/mnt/with space",
		`/mnt/tab\011x`:      "/mnt/tab\tx",
		`/mnt/back\134slash`: `/mnt/back\slash`,
		`/mnt/short\04`:      `/mnt/short\04`,
		`/mnt/notoct\999`:    `/mnt/notoct\999`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUserAllowOther(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]bool{
		"": false, "# user_allow_other\n": false, "user_allow_other\n": true,
		"mount_max = 1000\n  user_allow_other  \n": true, "user_allow_others\n": false,
	} {
		p := dir + "/fuse.conf"
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := userAllowOther(p); got != want {
			t.Errorf("userAllowOther(%q) = %v, want %v", content, got, want)
		}
	}
	if userAllowOther(dir + "/missing") {
		t.Error("a missing fuse.conf allows other users")
	}
}
