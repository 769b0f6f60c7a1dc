// oci-image assembles a single-layer container image from files on this machine and writes
// it as an OCI image-layout archive that `ctr images import` (and `docker load`) accept. No
// registry, no Docker engine, no base image: the layer holds exactly the files named.
//
//	oci-image -o modelgate.oci.tar -name localhost/modelgate/modelgate:dev \
//	  -entrypoint '["/usr/local/bin/modelgate"]' -cmd '["--help"]' -user 65532:65532 \
//	  -expose 12000 -expose 12001 \
//	  target/release/modelgate:/usr/local/bin/modelgate:0755 \
//	  /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt
//
// Each positional argument is SOURCE:DESTINATION[:MODE] (MODE in octal; default: the source's
// permission bits). Sources are read through symlinks; parent directories are created 0755,
// owned by root. Every timestamp is the Unix epoch, so the same inputs always give the same
// image digest.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

type file struct {
	source, dest string
	mode         fs.FileMode
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "oci-image: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("o", "", "the OCI archive to write")
	name := flag.String("name", "", "the image reference, e.g. localhost/modelgate/modelgate:dev")
	entrypoint := flag.String("entrypoint", "", "ENTRYPOINT as a JSON array")
	cmd := flag.String("cmd", "", "CMD as a JSON array")
	user := flag.String("user", "", "USER, e.g. 65532:65532")
	workdir := flag.String("workdir", "/", "WORKDIR")
	var expose, labels, env list
	flag.Var(&expose, "expose", "a TCP port to declare (repeatable)")
	flag.Var(&labels, "label", "KEY=VALUE (repeatable)")
	flag.Var(&env, "env", "KEY=VALUE (repeatable)")
	flag.Parse()
	if *out == "" || *name == "" || flag.NArg() == 0 {
		flag.Usage()
		return fmt.Errorf("-o, -name and at least one SOURCE:DESTINATION are required")
	}

	files, err := parseFiles(flag.Args())
	if err != nil {
		return err
	}
	layerTar, err := layerOf(files)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return fmt.Errorf("appending the layer: %w", err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)

	config := v1.Config{User: *user, WorkingDir: *workdir, Env: env}
	if err := jsonList(*entrypoint, &config.Entrypoint); err != nil {
		return fmt.Errorf("-entrypoint: %w", err)
	}
	if err := jsonList(*cmd, &config.Cmd); err != nil {
		return fmt.Errorf("-cmd: %w", err)
	}
	if len(expose) > 0 {
		config.ExposedPorts = map[string]struct{}{}
		for _, port := range expose {
			if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				return fmt.Errorf("-expose %q is not a port", port)
			}
			config.ExposedPorts[port+"/tcp"] = struct{}{}
		}
	}
	if len(labels) > 0 {
		config.Labels = map[string]string{}
		for _, kv := range labels {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("-label %q is not KEY=VALUE", kv)
			}
			config.Labels[k] = v
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Config = config
	cf.Architecture = "amd64"
	cf.OS = "linux"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.History = []v1.History{{Created: cf.Created, CreatedBy: "tests/node/cmd/oci-image"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}

	return writeArchive(img, *name, *out)
}

func jsonList(s string, into *[]string) error {
	if s == "" {
		return nil
	}
	return json.Unmarshal([]byte(s), into)
}

func parseFiles(args []string) ([]file, error) {
	var files []file
	for _, arg := range args {
		parts := strings.Split(arg, ":")
		if len(parts) < 2 || len(parts) > 3 || !path.IsAbs(parts[1]) {
			return nil, fmt.Errorf("%q is not SOURCE:/DESTINATION[:MODE]", arg)
		}
		info, err := os.Stat(parts[0])
		if err != nil {
			return nil, err
		}
		if !info.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file", parts[0])
		}
		mode := info.Mode().Perm()
		if len(parts) == 3 {
			m, err := strconv.ParseUint(parts[2], 8, 32)
			if err != nil {
				return nil, fmt.Errorf("mode %q in %q is not octal", parts[2], arg)
			}
			mode = fs.FileMode(m)
		}
		files = append(files, file{source: parts[0], dest: path.Clean(parts[1]), mode: mode})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].dest < files[j].dest })
	for i := 1; i < len(files); i++ {
		if files[i].dest == files[i-1].dest {
			return nil, fmt.Errorf("%s is given twice", files[i].dest)
		}
	}
	return files, nil
}

// layerOf is an uncompressed tar of the files and their parent directories, in a fixed order
// with fixed owners and times.
func layerOf(files []file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dirs := map[string]bool{}
	for _, f := range files {
		var parents []string
		for d := path.Dir(f.dest); d != "/" && !dirs[d]; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			dirs[d] = true
			hdr := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, err
			}
		}
		data, err := os.ReadFile(f.source)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.dest, "/"), Mode: int64(f.mode), Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeArchive writes an OCI image layout holding img, named for containerd
// (io.containerd.image.name) and by tag (org.opencontainers.image.ref.name), as a tar.
func writeArchive(img v1.Image, name, out string) error {
	dir, err := os.MkdirTemp(filepath.Dir(out), ".oci-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	tag := name[strings.LastIndex(name, ":")+1:]
	if strings.Contains(tag, "/") {
		return fmt.Errorf("-name %q has no tag", name)
	}
	if err := p.AppendImage(img,
		layout.WithAnnotations(map[string]string{
			"io.containerd.image.name":          name,
			"org.opencontainers.image.ref.name": tag,
		}),
		layout.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}),
	); err != nil {
		return err
	}

	tmp := out + ".partial"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if d.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
			return tw.WriteHeader(hdr)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s\n", name, digest)
	return os.Rename(tmp, out)
}
