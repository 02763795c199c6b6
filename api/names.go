package api

import (
	"regexp"
	"sort"
	"strings"
)

// IsFileName reports whether s can be one name of a path: not empty, not
// "." or "..", no "/" or NUL, at most 255 bytes. Names the API gives that
// are not are left out of the tree, never altered into something else.
func IsFileName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00") && len(s) <= 255
}

var buildIDPattern = regexp.MustCompile(`^[a-fA-F0-9]{24}$`)

// IsBuildID reports whether s has the form of a build id.
func IsBuildID(s string) bool { return buildIDPattern.MatchString(s) }

// BuildNames are the names a build gets besides its id, shared by the
// mounted tree and the ls command so that both resolve them the same way.
type BuildNames struct {
	Latest *Build // the newest processed build; nil for none
	// Versions maps "<versionName>" and "<versionName>+<versionCode>" to
	// the newest processed build of that name.
	Versions map[string]*Build
	// Tags maps each tag to the processed builds carrying it, newest first.
	Tags map[string][]*Build
}

// NameBuilds names the processed builds among builds. Where two builds
// would get one name, the newest wins; the other keeps its id. Version
// names and tags that cannot be file names give no name.
func NameBuilds(builds []Build) BuildNames {
	// An id names one build, but a listing whose pages shifted (a build
	// uploaded meanwhile) holds some twice: the first copy listed stands for
	// it, as in the app's directory, so that no tag lists one id twice.
	var ok []*Build
	seen := make(map[string]bool, len(builds))
	for i := range builds {
		if b := &builds[i]; b.Status == StatusProcessed && IsBuildID(b.ID) && !seen[b.ID] {
			seen[b.ID] = true
			ok = append(ok, b)
		}
	}
	// Newest first; the id breaks ties so that the names do not depend on
	// the order the API listed the builds in.
	sort.SliceStable(ok, func(i, j int) bool {
		if !ok[i].CreatedAt.Equal(ok[j].CreatedAt) {
			return ok[i].CreatedAt.After(ok[j].CreatedAt)
		}
		return ok[i].ID > ok[j].ID
	})
	n := BuildNames{Versions: map[string]*Build{}, Tags: map[string][]*Build{}}
	claim := func(name string, b *Build) {
		if _, taken := n.Versions[name]; !taken && IsFileName(name) {
			n.Versions[name] = b
		}
	}
	for _, b := range ok {
		if n.Latest == nil {
			n.Latest = b
		}
		if b.VersionName != "" {
			claim(b.VersionName, b)
			if b.VersionCode != "" {
				claim(b.VersionName+"+"+string(b.VersionCode), b)
			}
		}
		seen := map[string]bool{}
		for _, t := range b.Tags {
			if IsFileName(t) && !seen[t] {
				seen[t] = true
				n.Tags[t] = append(n.Tags[t], b)
			}
		}
	}
	return n
}
