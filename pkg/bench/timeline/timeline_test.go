package timeline

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"testing"
)

func TestWritePNG(t *testing.T) {
	var pts []Point
	for i := range 60 {
		pts = append(pts, Point{T: float64(i), V: float64(i % 7)})
	}
	panels := []Panel{
		{Title: "load", YLabel: "req/s", Series: []Series{{Name: "sent", Points: pts}}},
		{Title: "replicas per pool", YLabel: "pods", Series: []Series{
			{Name: "GPU-V100-Edge", Step: true, Points: []Point{{0, 1}, {59, 1}}},
			{Name: "GPU-V100-Elastic", Step: true, Points: []Point{{0, 0}, {20, 2}, {59, 2}}},
		}},
		{Title: "empty", YLabel: "x"},
	}
	var buf bytes.Buffer
	if err := WritePNG(&buf, panels, Options{Title: "bench", Width: 800, Height: 600}); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if got := img.Bounds().Size(); got != (image.Point{X: 800, Y: 600}) {
		t.Errorf("size %v, want 800x600", got)
	}
	// Non-trivial: each of the first two series' colours is drawn somewhere.
	for _, want := range palette[:2] {
		if countColour(img, want) < 50 {
			t.Errorf("colour %v is (nearly) absent: the lines were not drawn", want)
		}
	}
	if err := WritePNG(&buf, nil, Options{}); err == nil {
		t.Error("WritePNG with no panels: no error")
	}
}

func countColour(img image.Image, c color.Color) int {
	r0, g0, b0, _ := c.RGBA()
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r, r0) && near(g, g0) && near(bl, b0) {
				n++
			}
		}
	}
	return n
}

func near(a, b uint32) bool {
	d := int(a>>8) - int(b>>8)
	return d > -24 && d < 24
}
