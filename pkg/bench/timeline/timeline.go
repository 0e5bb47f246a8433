// Package timeline draws stacked time-series panels sharing one time axis
// into a PNG: what `spillway bench --plot` shows (load, TTFT, replicas per
// node pool, nodes per pool). It knows nothing about benchmarks; callers
// hand it panels of named series.
package timeline

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Point is one value at T seconds from the start.
type Point struct {
	T, V float64
}

// Series is one named line.
type Series struct {
	Name   string
	Points []Point
	// Step draws the line as steps (counts such as replicas and nodes).
	Step bool
}

// Panel is one chart of the stack.
type Panel struct {
	Title  string
	YLabel string
	Series []Series
}

// Options size the picture.
type Options struct {
	Title string
	// Width and Height of the whole picture in pixels (default 1200 wide,
	// 300 per panel).
	Width, Height int
}

// palette is distinguishable for the usual colour-vision deficiencies
// (Okabe-Ito).
var palette = []color.Color{
	color.RGBA{0, 114, 178, 255},   // blue
	color.RGBA{213, 94, 0, 255},    // vermillion
	color.RGBA{0, 158, 115, 255},   // green
	color.RGBA{204, 121, 167, 255}, // purple
	color.RGBA{230, 159, 0, 255},   // orange
	color.RGBA{86, 180, 233, 255},  // sky blue
	color.RGBA{0, 0, 0, 255},       // black
}

// WritePNG draws the panels one above the other, all on the same time axis.
func WritePNG(w io.Writer, panels []Panel, o Options) error {
	if len(panels) == 0 {
		return errors.New("timeline: no panels to draw")
	}
	width, height := o.Width, o.Height
	if width == 0 {
		width = 1200
	}
	if height == 0 {
		height = 300 * len(panels)
	}
	tmax := 1.0
	for _, p := range panels {
		for _, s := range p.Series {
			for _, pt := range s.Points {
				if !math.IsNaN(pt.T) && pt.T > tmax {
					tmax = pt.T
				}
			}
		}
	}
	rows := make([][]*plot.Plot, len(panels))
	for i, p := range panels {
		pl, err := panelPlot(p, tmax, i == len(panels)-1)
		if err != nil {
			return fmt.Errorf("timeline panel %q: %w", p.Title, err)
		}
		rows[i] = []*plot.Plot{pl}
	}
	const dpi = 96
	img := vgimg.NewWith(vgimg.UseWH(vg.Length(width)*vg.Inch/dpi, vg.Length(height)*vg.Inch/dpi), vgimg.UseDPI(dpi))
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	top := dc
	if o.Title != "" {
		title := draw.TextStyle{Color: color.Black, Font: font.From(plot.DefaultFont, vg.Points(14)), Handler: plot.DefaultTextHandler}
		title.XAlign = draw.XCenter
		title.YAlign = draw.YTop
		dc.FillText(title, vg.Point{X: dc.Center().X, Y: dc.Max.Y - vg.Points(4)}, o.Title)
		top = draw.Crop(dc, 0, 0, 0, -vg.Points(24))
	}
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadX: vg.Millimeter * 2, PadY: vg.Millimeter * 3, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(rows, tiles, top)
	for i := range rows {
		rows[i][0].Draw(canvases[i][0])
	}
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

func panelPlot(p Panel, tmax float64, last bool) (*plot.Plot, error) {
	pl := plot.New()
	pl.Title.Text = p.Title
	pl.Y.Label.Text = p.YLabel
	if last {
		pl.X.Label.Text = "time since start (s)"
	}
	pl.X.Min, pl.X.Max = 0, tmax
	pl.Y.Min = 0
	pl.Add(plotter.NewGrid())
	pl.Legend.Top = true
	pl.Legend.Left = true
	ymax := 0.0
	for i, s := range p.Series {
		if len(s.Points) == 0 {
			continue
		}
		xy := make(plotter.XYs, 0, len(s.Points))
		for _, pt := range s.Points {
			if math.IsNaN(pt.V) || math.IsInf(pt.V, 0) {
				continue
			}
			xy = append(xy, plotter.XY{X: pt.T, Y: pt.V})
			ymax = math.Max(ymax, pt.V)
		}
		if len(xy) == 0 {
			continue
		}
		line, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		line.Color = palette[i%len(palette)]
		line.Width = vg.Points(1.8)
		if s.Step {
			line.StepStyle = plotter.PostStep
		}
		pl.Add(line)
		pl.Legend.Add(s.Name, line)
	}
	if ymax == 0 {
		ymax = 1
	}
	// Head room above the highest value so the legend does not hide it.
	pl.Y.Max = ymax * 1.25
	return pl, nil
}
