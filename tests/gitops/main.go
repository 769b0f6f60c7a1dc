// gitops-health: what Argo CD and Flux would say about Kubernetes objects.
//
//	gitops-health --argocd-cm config/argocd/argocd-cm.yaml < objects.json
//
// reads one object, or a List of them (`kubectl get ... -o json`), on stdin and prints a JSON
// array with, for each object in order:
//
//	{"kind": ..., "name": ...,
//	 "kstatus": {"status": "Current|InProgress|Failed|Terminating|NotFound|Unknown", "message": ...},
//	 "argocd":  {"status": "Healthy|Progressing|Degraded|Suspended|Missing|Unknown", "message": ...}}
//
// kstatus is the real library Flux and kubectl-style waiters use
// (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute). The Argo CD health comes from the
// object's health script in the given argocd-cm ConfigMap (the data key
// `resource.customizations.health.<group>_<kind>`, as Argo CD looks it up), run the way Argo CD
// runs health scripts: gopher-lua with only the package, base and table libraries open, the
// object as the global `obj` (converted as Argo CD's util/lua decodeValue does), a one-second
// deadline, and the returned table's status checked against Argo CD's health codes. An object
// without a script gets "argocd": null. A script that fails is an error (exit 1): Argo CD would
// show the resource's health as Unknown with the Lua error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type health struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type verdict struct {
	Kind    string  `json:"kind"`
	Name    string  `json:"name"`
	KStatus health  `json:"kstatus"`
	ArgoCD  *health `json:"argocd"`
}

func main() {
	cmPath := flag.String("argocd-cm", "", "an argocd-cm ConfigMap (YAML) holding resource.customizations.health.* scripts")
	flag.Parse()
	if err := run(*cmPath, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "gitops-health: %v\n", err)
		os.Exit(1)
	}
}

func run(cmPath string, in io.Reader, out io.Writer) error {
	scripts := map[string]string{}
	if cmPath != "" {
		var err error
		if scripts, err = healthScripts(cmPath); err != nil {
			return err
		}
	}
	input, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	objects, err := decode(input)
	if err != nil {
		return err
	}
	verdicts := make([]verdict, 0, len(objects))
	for _, obj := range objects {
		v := verdict{Kind: obj.GetKind(), Name: obj.GetName()}
		result, err := status.Compute(obj)
		if err != nil {
			return fmt.Errorf("kstatus of %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		v.KStatus = health{Status: result.Status.String(), Message: result.Message}
		if script, ok := scripts[configMapKey(obj)]; ok {
			h, err := executeHealthLua(obj, script)
			if err != nil {
				return fmt.Errorf("Argo CD health script for %s %s: %w", obj.GetKind(), obj.GetName(), err)
			}
			v.ArgoCD = h
		}
		verdicts = append(verdicts, v)
	}
	encoder := json.NewEncoder(out)
	encoder.SetIndent("", "  ")
	return encoder.Encode(verdicts)
}

// decode reads one object or a List, as the API (and client-go) would: integers as int64.
func decode(input []byte) ([]*unstructured.Unstructured, error) {
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(input); err != nil {
		return nil, fmt.Errorf("stdin is not a Kubernetes object or List: %w", err)
	}
	if !obj.IsList() {
		return []*unstructured.Unstructured{obj}, nil
	}
	list, err := obj.ToList()
	if err != nil {
		return nil, fmt.Errorf("reading the List: %w", err)
	}
	objects := make([]*unstructured.Unstructured, 0, len(list.Items))
	for i := range list.Items {
		objects = append(objects, &list.Items[i])
	}
	return objects, nil
}

// healthScripts reads the health scripts of an argocd-cm ConfigMap, keyed as Argo CD keys its
// resource overrides: `group/Kind`.
func healthScripts(path string) (map[string]string, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Data map[string]string `json:"data"`
	}
	if err := yaml.UnmarshalStrict(text, &cm); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cm.APIVersion != "v1" || cm.Kind != "ConfigMap" || cm.Metadata.Name != "argocd-cm" {
		return nil, fmt.Errorf("%s is a %s named %q, not the ConfigMap argocd-cm", path, cm.Kind, cm.Metadata.Name)
	}
	const prefix = "resource.customizations.health."
	scripts := map[string]string{}
	for key, script := range cm.Data {
		if len(key) <= len(prefix) || key[:len(prefix)] != prefix {
			continue
		}
		groupKind := key[len(prefix):]
		// `<group>_<kind>`: Argo CD replaces the '/' of group/Kind with '_' in these keys.
		for i := len(groupKind) - 1; i >= 0; i-- {
			if groupKind[i] == '_' {
				groupKind = groupKind[:i] + "/" + groupKind[i+1:]
				break
			}
		}
		scripts[groupKind] = script
	}
	if len(scripts) == 0 {
		return nil, fmt.Errorf("%s has no %s* keys", path, prefix)
	}
	return scripts, nil
}

func configMapKey(obj *unstructured.Unstructured) string {
	gvk := obj.GroupVersionKind()
	if gvk.Group == "" {
		return gvk.Kind
	}
	return gvk.Group + "/" + gvk.Kind
}

// executeHealthLua runs a health script as Argo CD's util/lua VM.ExecuteHealthLua does.
func executeHealthLua(obj *unstructured.Unstructured, script string) (*health, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj.Object))
	if err := l.DoString(script); err != nil {
		return nil, err
	}
	returned, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", l.Get(-1).Type())
	}
	h := &health{}
	for field, target := range map[string]*string{"status": &h.Status, "message": &h.Message} {
		switch value := returned.RawGetString(field).(type) {
		case lua.LString:
			*target = string(value)
		case *lua.LNilType:
		default:
			return nil, fmt.Errorf("the returned %s is a %s, not a string", field, value.Type())
		}
	}
	switch h.Status {
	case "Unknown", "Progressing", "Suspended", "Healthy", "Degraded", "Missing":
		return h, nil
	}
	return &health{Status: "Unknown", Message: "Lua returned an invalid health status"}, errors.New("invalid health status " + h.Status)
}

// decodeValue converts an unstructured value into Lua as Argo CD's util/lua decodeValue does.
func decodeValue(l *lua.LState, value interface{}) lua.LValue {
	switch converted := value.(type) {
	case bool:
		return lua.LBool(converted)
	case float64:
		return lua.LNumber(converted)
	case string:
		return lua.LString(converted)
	case json.Number:
		return lua.LString(converted)
	case int:
		return lua.LNumber(converted)
	case int32:
		return lua.LNumber(converted)
	case int64:
		return lua.LNumber(converted)
	case []interface{}:
		arr := l.CreateTable(len(converted), 0)
		for _, item := range converted {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]interface{}:
		tbl := l.CreateTable(0, len(converted))
		for key, item := range converted {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}
